"""How late the event loop runs: everything on it (polls, the bus, the sinks, the console)
waits that long for its turn. A timer asks to wake every `interval` seconds; the lag is how
much later it wakes. A lag of seconds means something blocks the loop (a disk write or a
long computation that belongs on a thread)."""

from __future__ import annotations

import asyncio
from collections import deque


class LoopLag:
    """`loop_lag_ms`: the last measurement; `loop_lag_max_ms`: the largest of the last
    `window` seconds (one slow turn a minute shows up for a minute, whenever one looks)."""

    def __init__(self, interval: float = 0.5, window: float = 60.0) -> None:
        self.interval = interval
        self.samples: deque[float] = deque(maxlen=max(1, round(window / interval)))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, loop.time() - asked))

    def health(self) -> dict[str, float]:
        last = self.samples[-1] if self.samples else 0.0
        largest = max(self.samples, default=0.0)
        return {"loop_lag_ms": round(last * 1000, 1), "loop_lag_max_ms": round(largest * 1000, 1)}
