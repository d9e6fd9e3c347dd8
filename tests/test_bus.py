"""The bus between drivers and sinks."""

from __future__ import annotations

from core.types import Sample


def test_a_failing_bus_subscriber_does_not_starve_the_others() -> None:
    from gateway.service import Bus

    bus = Bus()
    seen: list[Sample] = []

    def broken(_sample: Sample) -> None:
        raise RuntimeError("a rule's bug")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    for ts in range(3):
        bus.publish(Sample("m1", ts, {"p_w": 1.0}))
    assert [s.ts for s in seen] == [0, 1, 2]
    assert sum(bus.problems.counts.values()) == 3
