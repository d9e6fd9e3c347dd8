"""What the demand-response parts hand each other.

A source (the webhook, the OpenADR VEN, MQTT) turns what it receives into a rules input and
hands it to a `DrSink`, which answers with the rules' outcome as text: "accepted",
"cancelled", "unknown", or "refused: <why>". The load-shed accounting answers, per event id,
with a `ShedFigure` (or None while it knows nothing of the event).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from rules.inputs import parse_dr_event
from rules.model import Input

log = logging.getLogger("guanjia.dr")

DrInput = Input
"""A DemandResponseEvent, a DemandResponseCancel, or an off window switched (AcWindowSwitch)."""
DrSink = Callable[[DrInput], str]
"""Hand an event to the rules; the outcome as text ("accepted", "refused: ...")."""


@dataclass(frozen=True, slots=True)
class ShedFigure:
    """The load an event shed, measured on the AC meter (energy over the event window).

    baseline_kwh: what the meter would have used in the window, from its history (the mean of
    the same window on the last similar days, `baseline_days`); actual_kwh: what it used;
    reduction_kwh = baseline - actual; reduction_kw: that over the window's hours. `complete`
    is False while the event still runs (the figures so far, the window cut at `until`).
    """

    event_id: str
    meter: str
    start: float  # epoch seconds
    end: float
    until: float  # the figures cover start..until (until == end once complete)
    baseline_kwh: float
    actual_kwh: float
    reduction_kwh: float
    reduction_kw: float
    baseline_days: tuple[str, ...]  # ISO dates the baseline averages
    complete: bool


ShedOf = Callable[[str], ShedFigure | None]
"""The load shed of an event id so far, None when there is nothing to say yet."""


def deliver_payload(payload: bytes, sink: DrSink) -> str:
    """A message in the gateway's own format (MQTT `dr/event`, rules/inputs.py) to `sink`;
    one that does not parse is refused, saying what to send instead."""
    try:
        event = parse_dr_event(payload)
    except ValueError as exc:
        log.warning("demand response event refused: %s", exc)
        return f"refused: {exc}"
    return sink(event)
