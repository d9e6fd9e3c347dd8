"""Logging a recurring problem once, and counting every occurrence."""

from __future__ import annotations

import logging
from collections import Counter


class ProblemCounter:
    """Counts problems by key; logs the first of each key, then stays quiet.

    A device that sends a bad value every second must not fill the log; the count tells how
    often it happened, and the health view shows the counters.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.counts: Counter[str] = Counter()

    def report(self, key: str, message: str, level: int = logging.WARNING) -> None:
        self.counts[key] += 1
        if self.counts[key] == 1:
            self.logger.log(level, "%s (further occurrences are counted, not logged)", message)

    def total(self) -> int:
        return sum(self.counts.values())
