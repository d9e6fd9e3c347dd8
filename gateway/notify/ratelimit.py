"""How fast one channel may send, and how long it waits after a failure.

A robot's limit ("20 messages a minute", shared facts channels.md) is enforced as a sliding
window: never more than `max` sends in any span of `per` seconds. That satisfies both readings
of the vendor's wording (a calendar minute is one such span), which the documentation leaves
open. A send is counted at the moment its answer arrived, which is after the service counted
it, so our window never runs ahead of theirs even when requests take a while. Only answered
sends count (delivered, or refused for good); attempts that failed and will be retried are
spaced by the backoff instead.

Red alarms may use every slot; the lower grades leave `red_reserve` slots free, so a red raised
in the middle of a flood of lower grades finds a slot instead of waiting for the window to roll.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One channel's budget. `hold_s`: after an answer that says "too fast", send nothing for
    this long (DingTalk blocks a robot for 10 minutes once it went over 20 a minute)."""

    max: int = 20
    per_s: float = 60.0
    hold_s: float = 600.0
    red_reserve: int = 2

    def __post_init__(self) -> None:
        if self.max < 1 or self.per_s <= 0 or self.hold_s < 0:
            raise ValueError(f"invalid rate limit {self}")
        if not 0 <= self.red_reserve < self.max:
            raise ValueError(f"red_reserve must be below max ({self.max}): {self.red_reserve}")


class Limiter:
    """The sliding window of one channel, on the monotonic clock."""

    def __init__(self, limit: RateLimit, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._sent: deque[float] = deque()
        self.held_until = 0.0

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.limit.per_s:
            self._sent.popleft()

    def available(self, red: bool) -> int:
        """Sends allowed right now for this class (red or lower), 0 while held."""
        now = self._clock()
        if now < self.held_until:
            return 0
        self._expire(now)
        cap = self.limit.max if red else self.limit.max - self.limit.red_reserve
        return max(0, cap - len(self._sent))

    def wait_s(self, red: bool) -> float:
        """Seconds until one send of this class is allowed (0 = now)."""
        now = self._clock()
        if now < self.held_until:
            return self.held_until - now
        self._expire(now)
        cap = self.limit.max if red else self.limit.max - self.limit.red_reserve
        over = len(self._sent) - cap
        if over < 0:
            return 0.0
        return max(0.0, self._sent[over] + self.limit.per_s - now)

    def record(self) -> None:
        """One request answered (counted whatever the answer: the service counted it too)."""
        self._sent.append(self._clock())

    def hold(self) -> float:
        """The service said "too fast": nothing goes out for `hold_s`. Returns the end."""
        self.held_until = self._clock() + self.limit.hold_s
        return self.held_until


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, and when to give up.

    The n-th consecutive failure waits `first_s * 2**(n-1)`, capped at `max_s`, scaled by a
    random factor in [1 - jitter, 1] so that many gateways behind one proxy do not retry in
    step. A delivery still undelivered `give_up_s` after it was stored is dead.
    """

    first_s: float = 5.0
    max_s: float = 600.0
    jitter: float = 0.5
    give_up_s: float = 86400.0

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        base = min(self.max_s, self.first_s * 2 ** max(0, min(failures - 1, 62)))
        draw: float = (rng or random).random()
        return float(base * (1.0 - self.jitter * draw))
