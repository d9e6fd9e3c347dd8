"""Text that came from outside, made safe to repeat."""

from __future__ import annotations


def shorten(text: str, limit: int = 64) -> str:
    """Text from outside, cut for a log line, a reply or an audit field."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
