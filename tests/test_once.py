"""A recurring problem is logged once and counted; the keys it is counted under are bounded."""

from __future__ import annotations

import logging

import pytest

from core.once import ProblemCounter


def test_logged_once_counted_always(caplog: pytest.LogCaptureFixture) -> None:
    problems = ProblemCounter(logging.getLogger("test.once"))
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            problems.report("dev:nan", "dev: a NaN")
    assert problems.counts["dev:nan"] == 5
    assert [r.getMessage() for r in caplog.records] == [
        "dev: a NaN (further occurrences are counted, not logged)"
    ]


def test_keys_from_outside_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    # Someone publishing on a million topics must not grow the gateway's memory.
    problems = ProblemCounter(logging.getLogger("test.once"), max_keys=100)
    with caplog.at_level(logging.WARNING):
        for i in range(10_000):
            problems.report(f"topic/{i}:unclaimed", f"topic/{i}: unclaimed")
    assert len(problems.counts) == 101
    assert problems.counts[ProblemCounter.OVERFLOW] == 9_900
    assert problems.total() == 10_000
    assert len(caplog.records) == 101  # 100 first occurrences and one word about the bound
