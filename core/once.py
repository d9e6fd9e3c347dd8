"""Logging a recurring problem once, and counting every occurrence."""

from __future__ import annotations

import logging
from collections import Counter


class ProblemCounter:
    """Counts problems by key; logs the first of each key, then stays quiet.

    A device that sends a bad value every second must not fill the log; the count tells how
    often it happened, and the health view shows the counters.

    Keys come from outside (topics, device ids, registers), so their number is bounded:
    past `max_keys` distinct keys, new ones are counted under one overflow key, logged once.
    """

    OVERFLOW = "other"

    def __init__(self, logger: logging.Logger, max_keys: int = 1000) -> None:
        self.logger = logger
        self.max_keys = max_keys
        self.counts: Counter[str] = Counter()

    def report(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if key not in self.counts and len(self.counts) >= self.max_keys:
            if self.OVERFLOW not in self.counts:
                self.logger.warning(
                    "more than %d kinds of problem: further new ones are counted as %r, not logged",
                    self.max_keys,
                    self.OVERFLOW,
                )
            key = self.OVERFLOW
        self.counts[key] += 1
        if self.counts[key] == 1 and key != self.OVERFLOW:
            self.logger.log(level, "%s (further occurrences are counted, not logged)", message)

    def total(self) -> int:
        return sum(self.counts.values())
