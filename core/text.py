"""Text that came from outside, made safe to repeat."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def shorten(text: str, limit: int = 64) -> str:
    """Text from outside, cut for a log line, a reply or an audit field."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def suggest(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean 'x'?" for the closest choice, or nothing."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""
