"""The outbox (SQLite, its own thread) and the delivery worker, against local vendor endpoints:
durable and idempotent enqueue, a channel down and back, SIGKILL before sending, a flood
folded into digests within the robot's limit, red first."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from gateway.notify.channels.base import Channel
from gateway.notify.channels.config import DingTalkConfig, RateConfig, WebhookConfig
from gateway.notify.channels.dingtalk import DingTalkChannel
from gateway.notify.channels.webhook import WebhookChannel
from gateway.notify.delivery import Delivery, Grade, Message, Recipient
from gateway.notify.delivery_worker import DeliveryWorker, default_fold
from gateway.notify.outbox import CHECKPOINT_COMMITS, Outbox, OutboxStore
from gateway.notify.ratelimit import Limiter, RateLimit, RetryPolicy
from tests.notify_endpoints import DingTalkRobot, Webhook

ROOT = Path(__file__).resolve().parents[1]
TOKEN, SECRET = "robot-token", "SECtest-signing-secret"
FAST_RETRY = RetryPolicy(first_s=0.05, max_s=0.2, jitter=0.5, give_up_s=3600.0)
PEOPLE = [Recipient(name=f"p{i}", mobile=f"1380013800{i}") for i in range(5)]


def note(
    key: str,
    grade: Grade = "yellow",
    recipient: Recipient = PEOPLE[0],
    channel: str = "duty",
) -> Delivery:
    return Delivery(
        key=key,
        channel=channel,
        recipient=recipient,
        message=Message(title=f"title-{key}", text=f"text of {key}"),
        grade=grade,
        alarm_id=f"alarm-{key}",
        created=time.time(),
    )


def dingtalk(robot: DingTalkRobot, rate: RateConfig | None = None) -> DingTalkChannel:
    fields: dict[str, object] = {
        "kind": "dingtalk",
        "name": "duty",
        "url": robot.url,
        "access_token": "${T}",
        "secret": "${S}",
        "timeout": 2.0,
    }
    if rate is not None:
        fields["rate"] = rate
    config = DingTalkConfig.model_validate(fields)
    return DingTalkChannel(config, {"${T}": TOKEN, "${S}": SECRET}.__getitem__)


@asynccontextmanager
async def running(
    path: Path, channels: Sequence[Channel], **options: object
) -> AsyncIterator[tuple[Outbox, DeliveryWorker]]:
    settings: dict[str, object] = {"retry": FAST_RETRY, "scan_interval_s": 0.05, **options}
    outbox = Outbox(path)
    outbox.start()
    try:
        worker = DeliveryWorker(outbox, channels, **settings)  # type: ignore[arg-type]
        worker.start()
        try:
            yield outbox, worker
        finally:
            await worker.stop()
    finally:
        await outbox.stop()


def uuids(robot: DingTalkRobot) -> list[str]:
    return [r.json["msgUuid"] for r in robot.posted]


# -- the outbox alone ----------------------------------------------------------------------


def test_enqueue_is_idempotent_and_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "outbox.db"
    store = OutboxStore(path)
    try:
        assert [d.key for d in store.enqueue([note("a"), note("b"), note("a")])] == ["a", "b"]
        assert store.enqueue([note("a")]) == []  # seen before: ignored
        store.mark_delivered("a")
        assert store.enqueue([note("a")]) == []  # also once delivered
        state, row = store.get("b") or ("", None)
        assert state == "pending"
        assert row is not None
        assert row.delivery.message.title == "title-b"
        assert row.delivery.recipient == PEOPLE[0]
    finally:
        store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_due_order_failures_dead_and_stats(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db")
    try:
        t0 = 1_000_000.0
        store.enqueue([note("blue", "blue"), note("red", "red"), note("orange", "orange")], t0)
        store.enqueue([note("sms1", "red", channel="sms")], t0 + 1)
        assert [p.delivery.key for p in store.due(t0 + 5, 10)] == ["red", "sms1", "orange", "blue"]
        assert [p.delivery.key for p in store.due(t0 + 5, 1)] == ["red"]

        store.mark_failed("red", "HTTP 502", next_try=t0 + 60)
        assert "red" not in [p.delivery.key for p in store.due(t0 + 30, 10)]
        [again] = [p for p in store.due(t0 + 60, 10) if p.delivery.key == "red"]
        assert (again.attempts, again.last_error, again.next_try) == (1, "HTTP 502", t0 + 60)

        store.mark_dead("blue", "errcode 400102: 机器人已停用", now=t0 + 70)
        store.mark_delivered("orange", now=t0 + 70)
        stats = store.stats(now=t0 + 100)
        assert (stats.depth, stats.failing, stats.dead) == (2, 1, 1)
        assert stats.oldest_s == 100.0
        assert stats.channels["duty"].depth == 1
        assert stats.channels["duty"].dead == 1
        assert stats.channels["sms"].oldest_s == 99.0

        assert store.prune(before=t0 + 71) == 2  # delivered and dead rows, done before
        assert store.get("orange") is None
        assert store.get("red") is not None
    finally:
        store.close()


def test_past_max_pending_only_red_is_queued(tmp_path: Path) -> None:
    store = OutboxStore(tmp_path / "outbox.db", max_pending=2)
    try:
        store.enqueue([note("a"), note("b")])
        assert [d.key for d in store.enqueue([note("c", "blue"), note("d", "red")])] == ["d"]
        state_c = store.get("c")
        state_d = store.get("d")
        assert state_c is not None
        assert state_c[0] == "dead"
        assert "outbox full" in state_c[1].last_error
        assert state_d is not None
        assert state_d[0] == "pending"
        assert store.stats().overflowed == 1
    finally:
        store.close()


async def test_threaded_outbox_batches_and_answers_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.start()
    seen: list[list[str]] = []
    outbox.subscribe(lambda ds: seen.append([d.key for d in ds]))
    try:
        stored = await outbox.enqueue([note("a"), note("b")])
        assert [d.key for d in stored] == ["a", "b"]
        assert await outbox.enqueue([note("a")]) == []
        assert seen == [["a", "b"]]  # told once, after the commit
        await outbox.mark_delivered("a")
        assert [p.delivery.key for p in await outbox.due(math.inf, 10)] == ["b"]
        assert (await outbox.stats()).depth == 1
    finally:
        await outbox.stop()


async def test_enqueue_answers_after_the_fsync_of_the_next_round(tmp_path: Path) -> None:
    """Subscribers hear of a delivery at its commit; `enqueue` answers only after the fsync,
    which waits for the thread's next round of work (here the mark after a send) or for
    `sync_within_s`, whichever comes first."""
    outbox = Outbox(tmp_path / "outbox.db", sync_within_s=3600.0)
    outbox.start()
    heard = asyncio.Event()
    outbox.subscribe(lambda ds: heard.set())
    try:
        enqueue = asyncio.create_task(outbox.enqueue([note("a")]))
        await heard.wait()
        assert (enqueue.done(), outbox.commits, outbox.syncs) == (False, 1, 0)
        await outbox.mark_delivered("a")  # the next round: its commit, then the fsync
        assert [d.key for d in await enqueue] == ["a"]
        assert (outbox.commits, outbox.syncs) == (2, 1)
    finally:
        await outbox.stop()

    alone = Outbox(tmp_path / "alone.db", sync_within_s=0.0)
    alone.start()
    try:  # nothing else comes: the fsync after sync_within_s
        assert [d.key for d in await alone.enqueue([note("b")])] == ["b"]
        assert alone.syncs == 1
    finally:
        await alone.stop()


async def test_the_outbox_thread_checkpoints_the_wal_between_rounds(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint is off (it would run inside whichever commit makes the
    WAL long, perhaps the one an alarm waits for); the thread checkpoints between rounds."""
    outbox = Outbox(tmp_path / "outbox.db", sync_within_s=0.0)
    outbox.start()
    try:
        await outbox.enqueue([note("a")])
        for _ in range(5 * CHECKPOINT_COMMITS):  # at the latest after 4 x CHECKPOINT_COMMITS
            await outbox.mark_failed("a", "HTTP 502", next_try=0.0)
            if outbox.checkpoints:
                break
        assert outbox.checkpoints == 1
        assert outbox.commits >= CHECKPOINT_COMMITS
        assert [d.key for d in await outbox.enqueue([note("b")])] == ["b"]  # the WAL anew
        assert [p.delivery.key for p in await outbox.due(math.inf, 10)] == ["a", "b"]
    finally:
        await outbox.stop()
    store = OutboxStore(tmp_path / "outbox.db")
    try:
        row = store.get("a")
        assert row is not None
        assert row[1].attempts >= CHECKPOINT_COMMITS
    finally:
        store.close()


async def test_a_failing_subscriber_does_not_hold_the_answers(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db", sync_within_s=0.0)
    outbox.start()

    def broken(_deliveries: list[Delivery]) -> None:
        raise RuntimeError("subscriber bug")

    outbox.subscribe(broken)
    try:
        assert [d.key for d in await outbox.enqueue([note("a")])] == ["a"]
        await outbox.mark_delivered("a")
    finally:
        await outbox.stop()


# -- rate limit ----------------------------------------------------------------------------


def test_limiter_window_reserve_and_hold() -> None:
    now = [0.0]
    limiter = Limiter(RateLimit(max=3, per_s=10.0, hold_s=100.0, red_reserve=1), lambda: now[0])
    assert (limiter.available(red=False), limiter.available(red=True)) == (2, 3)
    limiter.record()
    now[0] = 1.0
    limiter.record()
    assert limiter.available(red=False) == 0
    assert limiter.wait_s(red=False) == 9.0  # until the first send leaves the window
    assert limiter.wait_s(red=True) == 0.0  # the reserved slot
    now[0] = 10.0
    assert limiter.available(red=False) == 1
    limiter.hold()
    assert limiter.available(red=True) == 0
    assert limiter.wait_s(red=True) == 100.0


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(first_s=1.0, max_s=8.0, jitter=0.5)
    for failures, ceiling in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)):
        delay = policy.delay(failures)
        assert ceiling / 2 <= delay <= ceiling


# -- the worker ----------------------------------------------------------------------------


async def test_delivers_each_once_through_500_refused_connections_and_lost_answers(
    tmp_path: Path,
) -> None:
    with DingTalkRobot(token=TOKEN, secret=SECRET) as robot:
        async with running(tmp_path / "outbox.db", [dingtalk(robot)]) as (outbox, worker):
            robot.fail(500)
            await outbox.enqueue([note("k1", "orange"), note("k2")])
            await robot.until(lambda r: len(r.requests) >= 3)  # retried, still failing
            robot.heal()
            await robot.until(lambda r: len(r.posted) == 2)

            robot.down()
            failures = worker.health()["notify_failures"]
            await outbox.enqueue([note("k3")])
            await until(lambda: worker.health()["notify_failures"] > failures)  # refused
            robot.up()
            await robot.until(lambda r: len(r.posted) == 3)

            robot.drop(times=1)  # posted, but the answer never arrives: retried, same msgUuid
            await outbox.enqueue([note("k4", "red")])
            await robot.until(lambda r: len(r.accepted) >= 4)

            await _until_settled(worker, outbox)
            await until(lambda: worker.health()["outbox_depth"] == 0)  # health: cached stats
            health = worker.health()
        assert sorted(uuids(robot)) == ["k1", "k2", "k3", "k4"]  # each exactly once
        assert [r.json["msgUuid"] for r in robot.requests].count("k4") == 2
        assert health["notify_duty_sent"] == 4
        assert health["notify_failures"] >= 2
    store = OutboxStore(tmp_path / "outbox.db")
    try:
        states = [store.get(k) for k in ("k1", "k2", "k3", "k4")]
        assert [s[0] if s else None for s in states] == ["delivered"] * 4
        assert states[0] is not None
        assert states[0][1].attempts >= 1
    finally:
        store.close()


async def _until_settled(worker: DeliveryWorker, outbox: Outbox, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (await outbox.stats()).depth or worker.in_memory():
        assert time.monotonic() < deadline, "deliveries still pending"
        await _tick()


async def until_depth(outbox: Outbox, depth: int, timeout: float = 10.0) -> None:
    """Until the outbox holds `depth` undelivered (a send's mark follows its answer)."""
    deadline = time.monotonic() + timeout
    while (await outbox.stats()).depth != depth:
        assert time.monotonic() < deadline, f"outbox depth never {depth}"
        await _tick()


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await _tick()


async def _tick() -> None:
    await asyncio.sleep(0.02)


async def test_permanent_refusal_is_dead_and_the_rest_goes_on(tmp_path: Path) -> None:
    with Webhook() as hook:
        channel = WebhookChannel(
            WebhookConfig(kind="webhook", name="hook", url=hook.url), lambda ref: ref
        )
        async with running(tmp_path / "outbox.db", [channel]) as (outbox, worker):
            hook.fail(403, times=1)
            await outbox.enqueue([note("bad", channel="hook")])
            await outbox.enqueue([note("good", channel="hook"), note("lost", channel="gone")])
            await hook.until(lambda h: len(h.accepted) == 1)
            await _until_settled(worker, outbox)
            stats = await outbox.stats()
            health = worker.health()
        assert hook.accepted[0].json["key"] == "good"
        assert stats.dead == 2
        assert health["notify_hook_dead"] == 1
        assert health["notify_orphaned"] == 1
    store = OutboxStore(tmp_path / "outbox.db")
    try:
        bad, lost = store.get("bad"), store.get("lost")
        assert bad is not None
        assert (bad[0], bad[1].last_error.startswith("HTTP 403")) == ("dead", True)
        assert lost is not None
        assert "no channel named 'gone'" in lost[1].last_error
    finally:
        store.close()


async def test_gives_up_after_give_up_s(tmp_path: Path) -> None:
    with Webhook() as hook:
        hook.fail(503)
        channel = WebhookChannel(
            WebhookConfig(kind="webhook", name="hook", url=hook.url), lambda ref: ref
        )
        async with running(
            tmp_path / "outbox.db",
            [channel],
            retry=RetryPolicy(first_s=0.05, max_s=0.1, give_up_s=0.0),
        ) as (outbox, worker):
            await outbox.enqueue([note("x", channel="hook")])
            await _until_settled(worker, outbox)
    store = OutboxStore(tmp_path / "outbox.db")
    try:
        row = store.get("x")
        assert row is not None
        assert row[0] == "dead"
        assert row[1].last_error.startswith("gave up after 0 h: HTTP 503")
    finally:
        store.close()


_KILLED = """
import asyncio, sys, time
from gateway.notify.delivery import Delivery, Message, Recipient
from gateway.notify.outbox import Outbox

async def main():
    outbox = Outbox(sys.argv[1])
    outbox.start()
    people = [Recipient(name=f"p{i}", mobile=f"1380013800{i}") for i in range(3)]
    stored = await outbox.enqueue([
        Delivery(key=f"killed-{i}", channel="duty", recipient=people[i % 3],
                 message=Message(title=f"title-{i}", text=f"text {i}"), grade="orange",
                 alarm_id=f"a{i}", created=time.time())
        for i in range(6)
    ])
    print(len(stored), flush=True)
    time.sleep(60)  # no worker, nothing sent: SIGKILL comes here

asyncio.run(main())
"""


async def test_sigkill_after_enqueue_then_a_new_process_delivers_exactly_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_KILLED), str(path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"6"  # durable: enqueue returned
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(10)
    assert child.returncode == -signal.SIGKILL

    with DingTalkRobot(token=TOKEN, secret=SECRET) as robot:
        async with running(path, [dingtalk(robot)]) as (outbox, worker):
            await robot.until(lambda r: len(r.posted) == 6)
            await _until_settled(worker, outbox)
            # The same transitions enqueued again (a notifier replaying): nothing new goes out.
            again = [note(f"killed-{i}", "orange") for i in range(6)]
            assert await outbox.enqueue(again) == []
        assert sorted(uuids(robot)) == sorted(f"killed-{i}" for i in range(6))
        assert len(robot.requests) == 6
        texts = {r.json["msgUuid"]: r.json["markdown"]["text"] for r in robot.posted}
        assert texts["killed-4"].startswith("#### title-4\n\ntext 4")
        assert texts["killed-4"].endswith("@13800138001")


async def test_flood_is_folded_into_digests_within_the_robot_limit(tmp_path: Path) -> None:
    """200 deliveries against a robot allowing 20 a window. The window is 3 s instead of
    DingTalk's minute so the test is short; the robot punishes any excess for 10 minutes,
    which would leave deliveries pending and fail the test."""
    window = 3.0
    with DingTalkRobot(
        token=TOKEN, secret=SECRET, limit=20, window_s=window, punish_s=600.0
    ) as robot:
        rate = RateConfig(max=20, per=window, hold=600.0, red_reserve=2)
        async with running(tmp_path / "outbox.db", [dingtalk(robot, rate)]) as (outbox, worker):
            grades: list[Grade] = ["blue", "yellow", "orange", "yellow"]
            batches = [
                [note(f"f{b:02d}-{i:02d}", grades[i % 4], PEOPLE[(b + i) % 5]) for i in range(20)]
                for b in range(10)
            ]
            for batch in batches:  # spread over the window, as "200 in a minute" would be
                await outbox.enqueue(batch)
                await asyncio.sleep(window / len(batches))
            await _until_settled(worker, outbox, timeout=30.0)
            health = worker.health()
        refused = [r for r in robot.requests if r.answer and r.answer.get("errcode") != 0]
        assert refused == []  # never over the limit: no 130101
        assert len(robot.posted) <= 40
        assert health["notify_duty_digests"] > 0
        assert (
            health["notify_duty_folded"]
            + health["notify_duty_sent"]
            - health["notify_duty_digests"]
            == 200
        )
        text = "\n".join(
            r.json["markdown"]["title"] + "\n" + r.json["markdown"]["text"] for r in robot.posted
        )
        missing = [d.key for b in batches for d in b if d.message.title not in text]
        assert missing == []  # none dropped
        for r in robot.posted:  # a digest goes to one person, and @s them
            mobiles = r.json["at"]["atMobiles"]
            assert len(mobiles) == 1
            assert f"@{mobiles[0]}" in r.json["markdown"]["text"]


async def test_red_is_sent_first_and_never_waits_behind_lower_digests(tmp_path: Path) -> None:
    with DingTalkRobot(token=TOKEN, secret=SECRET) as robot:
        # 4 a minute, one slot kept for red: the lower grades fill at most 3 of them.
        rate = RateConfig(max=4, per=60.0, hold=600.0, red_reserve=1)
        async with running(tmp_path / "outbox.db", [dingtalk(robot, rate)]) as (outbox, _w):
            robot.down()  # the first send fails: the lane pauses while more arrive
            await outbox.enqueue([note("blue-0", "blue", PEOPLE[0])])
            await outbox.enqueue(
                [note(f"blue-{p}-{i}", "blue", PEOPLE[p]) for p in range(5) for i in range(3)]
            )
            await outbox.enqueue([note("red-1", "red", PEOPLE[3])])
            robot.up()
            await robot.until(lambda r: len(r.posted) >= 3)
            assert robot.posted[0].json["msgUuid"] == "red-1"  # red first, though it came last
            # Then a flood of blue (16 for 5 people, 2 slots left for them): two digests.
            digests = [r.json for r in robot.posted[1:]]
            assert [d["at"]["atMobiles"] for d in digests] == [
                [PEOPLE[0].mobile],
                [PEOPLE[1].mobile],
            ]
            assert all(d["msgUuid"].startswith("digest:") for d in digests)
            assert "title-blue-0" in digests[0]["markdown"]["text"]

            # The window is full for blue; a new red takes the reserved slot at once.
            await outbox.enqueue([note("red-2", "red", PEOPLE[4])])
            await robot.until(lambda r: len(r.posted) == 4)
            assert robot.posted[3].json["msgUuid"] == "red-2"
            await until_depth(outbox, 9)  # blue for three people waits, kept


def test_default_fold_lists_each_title_highest_grade_first() -> None:
    message = default_fold([note("b", "blue"), note("r", "red"), note("y", "yellow")])
    assert message.title == "汇总：3 条通知"
    lines = message.text.splitlines()
    assert lines[1:] == ["[红] title-r", "[黄] title-y", "[蓝] title-b"]
    assert message.params["count"] == "3"
    many = default_fold([note(f"n{i}") for i in range(60)])
    assert many.text.splitlines()[-1] == "…另有 10 条"
