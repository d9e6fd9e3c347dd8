"""Batching Samples into line protocol for the writer, by size and by age."""

from __future__ import annotations

import asyncio

from core.types import Sample
from gateway.influx_writer import Batch, Writer
from gateway.lineproto import LineEncoder


class InfluxSink:
    """Runs on the event loop; its buffer is bounded by `max_points` (then it is handed over)."""

    def __init__(
        self, encoder: LineEncoder, writer: Writer, max_points: int, max_age: float
    ) -> None:
        self.encoder = encoder
        self.writer = writer
        self.max_points = max_points
        self.max_age = max_age
        self.lines_encoded = 0
        self._lines: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def offer(self, sample: Sample) -> None:
        line = self.encoder.encode(sample)
        if line is None:
            return
        self._lines.append(line)
        self.lines_encoded += 1
        if len(self._lines) >= self.max_points:
            self.flush()

    def offer_line(self, line: str) -> None:
        """A line built elsewhere (the audit trail), batched with the rest."""
        self._lines.append(line)
        if len(self._lines) >= self.max_points:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        lines.append("")
        self.writer.submit(Batch("\n".join(lines).encode(), len(lines) - 1))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.max_age)
            self.flush()

    def start(self) -> None:
        self.writer.start()
        self._task = asyncio.create_task(self._tick(), name="influx-batch")

    async def stop(self) -> None:
        """Flush what is buffered and let the writer deliver or spool it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.flush()
        await asyncio.to_thread(self.writer.stop)
