"""The bus: typed messages to synchronous subscribers and bounded inboxes."""

from __future__ import annotations

import asyncio

from core.types import Sample
from gateway.bus import Bus, Overflow
from gateway.messages import Health


def test_a_failing_bus_subscriber_does_not_starve_the_others() -> None:
    bus = Bus()
    seen: list[Sample] = []

    def broken(_sample: Sample) -> None:
        raise RuntimeError("a rule's bug")

    bus.subscribe(Sample, broken, name="broken")
    bus.subscribe(Sample, seen.append, name="seen")
    for ts in range(3):
        bus.publish(Sample("m1", ts, {"p_w": 1.0}))
    assert [s.ts for s in seen] == [0, 1, 2]
    assert bus.failures["broken"] == 3
    assert bus.health()["bus_subscriber_failures"] == 3


def test_messages_go_to_the_subscribers_of_their_type() -> None:
    bus = Bus()
    samples: list[Sample] = []
    health: list[Health] = []
    bus.subscribe(Sample, samples.append, name="s")
    bus.subscribe(Health, health.append, name="h")
    bus.publish(Sample("m1", 1, {}))
    bus.publish(Health(2, {"x": 1}))
    bus.publish("not a message anyone takes")
    assert [s.ts for s in samples] == [1]
    assert [h.ts for h in health] == [2]
    assert bus.health()["bus_samples"] == 1


async def test_an_inbox_is_bounded_and_says_what_it_dropped() -> None:
    bus = Bus()
    newest = bus.inbox(Sample, name="rules", bound=3, overflow=Overflow.DROP_OLDEST)
    oldest = bus.inbox(Sample, name="ordered", bound=3, overflow=Overflow.DROP_NEWEST)
    for ts in range(5):
        bus.publish(Sample("m1", ts, {}))
    assert [s.ts for s in await newest.get_batch()] == [2, 3, 4]
    assert [s.ts for s in oldest.drain()] == [0, 1, 2]
    health = bus.health()
    assert health["inbox_rules_dropped"] == 2
    assert health["inbox_ordered_dropped"] == 2
    assert health["inbox_rules_high_water"] == 3
    # A consumer waiting on an empty inbox wakes for the next message.
    waiting = asyncio.ensure_future(newest.get_batch())
    await asyncio.sleep(0)
    assert not waiting.done()
    bus.publish(Sample("m1", 9, {}))
    assert [s.ts for s in await asyncio.wait_for(waiting, 5)] == [9]


async def test_a_paced_inbox_takes_at_most_one_batch_per_pace() -> None:
    bus = Bus()
    box = bus.inbox(Sample, name="paced", bound=100, overflow=Overflow.DROP_OLDEST, pace=0.05)
    loop = asyncio.get_running_loop()
    # After a quiet spell the first message is taken at once.
    bus.publish(Sample("m1", 1, {}))
    assert box.ready() is None
    taken_at = loop.time()
    assert [s.ts for s in box.take()] == [1]
    # The next ones wait for the pace, and come together.
    waiting = asyncio.ensure_future(box.get_batch())
    for ts in (2, 3):
        await asyncio.sleep(0)
        bus.publish(Sample("m1", ts, {}))
    assert not waiting.done()
    assert [s.ts for s in await asyncio.wait_for(waiting, 5)] == [2, 3]
    assert loop.time() - taken_at >= 0.049  # the loop's clock may fire a timer a hair early
    # take() never waits and takes at most `limit`.
    for ts in (4, 5, 6):
        bus.publish(Sample("m1", ts, {}))
    assert [s.ts for s in box.take(2)] == [4, 5]
    assert [s.ts for s in box.take()] == [6]
    assert box.take() == []
