"""The OpenADR 2.0b VEN against a real openleadr VTN (OpenADRServer) on loopback: events into
the rules' sink, optIn/optOut back, cancellations, modifications, the load-shed report."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from openleadr import OpenADRServer, utils
from openleadr.service import VTNService
from pydantic import ValidationError

from gateway.config_errors import LineMap, problems_from_validation
from gateway.dr.contract import ShedFigure
from gateway.dr.openadr import (
    COUNTERS,
    REPORT_QUEUE,
    OpenAdrVen,
    Unmapped,
    _ReportQueue,
    map_event,
)
from gateway.dr.openadr_config import OpenAdrConfig
from rules.model import DemandResponseCancel, DemandResponseEvent
from tests.servers import free_port

VEN_ID = "ven-guanjia-1"
REGISTRATION_ID = "reg-1"
PREFIX = "/OpenADR2/Simple/2.0b"

# openleadr's VTN (the test's, not the gateway's) keeps itself on its aiohttp app by a str key
pytestmark = pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey")


class Vtn:
    """openleadr's own VTN, recording what the VEN answers and reports."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server = OpenADRServer(
            vtn_id="TEST-VTN",
            http_host="127.0.0.1",
            http_port=port,
            requested_poll_freq=timedelta(seconds=1),  # openleadr counts whole seconds
            show_fingerprint=False,
        )
        self.server.add_handler("on_create_party_registration", self._register)
        self.server.add_handler("on_register_report", self._register_report)
        self.registrations: list[dict[str, Any]] = []
        self.opts: list[tuple[str, str]] = []  # (event id, optIn / optOut)
        self.offered: list[str] = []  # r_ids the VEN offered
        self.reports: dict[str, list[tuple[datetime, float]]] = {}  # r_id -> values

    async def __aenter__(self) -> Vtn:
        await self.server.run()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop()

    def _register(self, payload: dict[str, Any]) -> tuple[str, str]:
        self.registrations.append(payload)
        return VEN_ID, REGISTRATION_ID

    def _register_report(self, report: dict[str, Any]) -> list[tuple[str, Any, timedelta]]:
        r_ids = [str(d["r_id"]) for d in report["report_descriptions"]]
        self.offered.extend(r_ids)
        return [(r_id, partial(self._got, r_id), timedelta(seconds=1)) for r_id in r_ids]

    def _got(self, r_id: str, values: list[tuple[datetime, float]]) -> None:
        self.reports.setdefault(r_id, []).extend(values)

    def _opt(self, ven_id: str, event_id: str, opt_type: str) -> None:
        self.opts.append((event_id, opt_type))

    def add_event(
        self, event_id: str, level: int, start: datetime, hours: float = 1.0, **kw: Any
    ) -> None:
        self.server.add_event(
            ven_id=VEN_ID,
            signal_name="SIMPLE",
            signal_type="level",
            intervals=[
                {"dtstart": start, "duration": timedelta(hours=hours), "signal_payload": level}
            ],
            callback=self._opt,
            event_id=event_id,
            **kw,
        )

    def event(self, event_id: str) -> Any:
        return utils.find_by(self.server.events[VEN_ID], "event_descriptor.event_id", event_id)

    def _expect_answer(self, event_id: str) -> None:
        # openleadr's VTN calls an event's callback for its first answer only
        self.server.event_callbacks[event_id] = (self.event(event_id), self._opt)

    def modify(self, event_id: str, level: int) -> None:
        event = self.event(event_id)
        for interval in event.event_signals[0].intervals:
            interval["signal_payload"] = level
        utils.increment_event_modification_number(event)
        self.server.events_updated[VEN_ID] = True
        self._expect_answer(event_id)

    def cancel(self, event_id: str) -> None:
        self._expect_answer(event_id)
        self.server.cancel_event(VEN_ID, event_id)


class Sink:
    """The rules' side of the contract, recording: accepts events and cancels unless told."""

    def __init__(self, answers: dict[str, str] | None = None) -> None:
        self.answers = answers or {}
        self.got: list[DemandResponseEvent | DemandResponseCancel] = []

    def __call__(self, item: Any) -> str:
        self.got.append(item)
        default = "cancelled" if isinstance(item, DemandResponseCancel) else "accepted"
        return self.answers.get(item.id, default)

    def of(self, event_id: str) -> list[DemandResponseEvent | DemandResponseCancel]:
        return [g for g in self.got if g.id == event_id]


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def config(port: int, **fields: Any) -> OpenAdrConfig:
    base: dict[str, Any] = {
        "vtn_url": f"http://127.0.0.1:{port}{PREFIX}",
        "ven_name": "guanjia-test",
        "reconnect_min": 0.1,
        "reconnect_max": 0.5,
        "report": {"min_sampling": "1s", "max_sampling": "1h"},
    }
    return OpenAdrConfig.model_validate(base | fields)


@asynccontextmanager
async def running(ven: OpenAdrVen) -> AsyncIterator[OpenAdrVen]:
    await ven.start()
    try:
        await asyncio.wait_for(ven.registered.wait(), 20)
        yield ven
    finally:
        await ven.stop()


@pytest.fixture
async def vtn() -> AsyncIterator[Vtn]:
    async with Vtn(free_port()) as server:
        yield server


def soon(minutes: float = 60) -> datetime:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).replace(microsecond=0)


# -- events --------------------------------------------------------------------------------


async def test_an_event_reaches_the_sink_mapped_and_the_vtn_gets_opt_in(vtn: Vtn) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", vtn.port)  # the VTN listens
    writer.close()
    await writer.wait_closed()
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port, resource_zones={"floor-3": ["3F-*", "3F"]}), sink)
    async with running(ven):
        assert ven.ven_id == VEN_ID
        assert ven.registration_id == REGISTRATION_ID
        start = soon()
        vtn.add_event("ev-1", 2, start, hours=2, targets_by_type={"resource_id": ["floor-3"]})
        await until(lambda: vtn.opts == [("ev-1", "optIn")])
    assert sink.got == [
        DemandResponseEvent(
            id="ev-1",
            start=start,
            end=start + timedelta(hours=2),
            offset=2.0,
            strategy="offset",
            zones=("3F-*", "3F"),
            source="openadr",
        )
    ]
    health = ven.health()
    assert health["events_received"] == 1
    assert health["opted_in"] == 1
    assert health["registrations"] == 1
    assert health["registered"] == 0  # stopped


async def test_a_refused_event_is_opted_out(vtn: Vtn) -> None:
    sink = Sink({"ev-r": "refused: rule dr-main: the event starts too soon"})
    ven = OpenAdrVen(config(vtn.port, poll_interval="1s"), sink)  # the VTN's, set again
    async with running(ven):
        vtn.add_event("ev-r", 3, soon(5))
        await until(lambda: vtn.opts == [("ev-r", "optOut")])
    (event,) = sink.got
    assert isinstance(event, DemandResponseEvent)
    assert (event.strategy, event.offset) == ("off", None)  # level 3 by default
    assert ven.health()["refused"] == 1
    assert ven.health()["opted_out"] == 1


async def test_a_level_or_a_target_not_mapped_is_opted_out_without_the_rules(vtn: Vtn) -> None:
    sink = Sink()
    ven = OpenAdrVen(
        config(
            vtn.port,
            levels={1: {"strategy": "offset", "offset_c": 1}},
            resource_zones={"floor-3": ["3F-*"]},
        ),
        sink,
    )
    async with running(ven):
        vtn.add_event("ev-level-3", 3, soon())
        vtn.add_event("ev-elsewhere", 1, soon(90), targets_by_type={"resource_id": ["annex"]})
        await until(lambda: len(vtn.opts) == 2)
    assert sorted(vtn.opts) == [("ev-elsewhere", "optOut"), ("ev-level-3", "optOut")]
    assert sink.got == []
    assert ven.health()["unmapped"] == 2


async def test_a_test_event_is_answered_and_leaves_the_units_alone(vtn: Vtn) -> None:
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port), sink)
    async with running(ven):
        vtn.add_event("ev-test", 3, soon())
        vtn.event("ev-test").event_descriptor.test_event = True  # before the VEN polls
        await until(lambda: vtn.opts == [("ev-test", "optIn")])
    assert sink.got == []
    assert ven.health()["test_events"] == 1


async def test_a_cancelled_event_becomes_a_cancel(vtn: Vtn) -> None:
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port), sink)
    async with running(ven):
        vtn.add_event("ev-c", 1, soon())
        await until(lambda: vtn.opts == [("ev-c", "optIn")])
        vtn.cancel("ev-c")
        await until(lambda: len(vtn.opts) == 2)
    assert vtn.opts[1] == ("ev-c", "optIn")  # the cancellation acknowledged
    assert [type(g) for g in sink.of("ev-c")] == [DemandResponseEvent, DemandResponseCancel]
    assert sink.got[1] == DemandResponseCancel("ev-c")
    assert ven.health()["events_cancelled"] == 1


async def test_a_modification_updates_the_event(vtn: Vtn) -> None:
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port), sink)
    async with running(ven):
        start = soon()
        vtn.add_event("ev-m", 1, start)
        await until(lambda: vtn.opts == [("ev-m", "optIn")])
        vtn.modify("ev-m", 3)
        await until(lambda: len(vtn.opts) == 2)
    assert vtn.opts[1] == ("ev-m", "optIn")
    first, second = sink.of("ev-m")
    assert isinstance(first, DemandResponseEvent)
    assert isinstance(second, DemandResponseEvent)
    assert (first.strategy, first.offset) == ("offset", 1.0)
    assert (second.strategy, second.offset, second.start) == ("off", None, start)
    assert ven.health()["events_modified"] == 1


async def test_a_refused_modification_cancels_the_version_the_rules_hold(vtn: Vtn) -> None:
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port), sink)
    async with running(ven):
        vtn.add_event("ev-x", 1, soon())
        await until(lambda: vtn.opts == [("ev-x", "optIn")])
        sink.answers["ev-x"] = "refused: rule dr-main: too long"
        vtn.modify("ev-x", 2)
        await until(lambda: len(vtn.opts) == 2)
    assert vtn.opts[1] == ("ev-x", "optOut")
    assert [type(g) for g in sink.of("ev-x")] == [
        DemandResponseEvent,
        DemandResponseEvent,
        DemandResponseCancel,
    ]


async def test_a_far_future_event_is_handed_once_through_repeats_and_a_restart(
    vtn: Vtn,
) -> None:
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port), sink)
    far = soon(60 * 24 * 90)  # three months ahead
    async with running(ven):
        vtn.add_event("ev-far", 2, far)
        await until(lambda: vtn.opts == [("ev-far", "optIn")])
        vtn.add_event("ev-next", 1, soon())  # the VTN sends both events again
        await until(lambda: len(vtn.opts) == 2)
    async with running(ven):  # a new registration: the VTN sends every event again
        await until(lambda: ven.health()["duplicates"] >= 2)
    (event,) = sink.of("ev-far")
    assert isinstance(event, DemandResponseEvent)
    assert event.start == far
    assert len(sink.of("ev-next")) == 1
    assert ven.health()["registrations"] == 2


async def test_a_cancelled_event_sent_again_does_not_opt_out_the_next(vtn: Vtn) -> None:
    """openleadr's client forgets its answer to a cancelled event; sent again, the event
    would fail the whole message and opt out of every event in it."""
    sink = Sink()
    ven = OpenAdrVen(config(vtn.port), sink)
    async with running(ven):
        vtn.add_event("ev-a", 1, soon(30))
        await until(lambda: vtn.opts == [("ev-a", "optIn")])
        cancelled = vtn.event("ev-a")
        vtn.cancel("ev-a")
        await until(lambda: len(vtn.opts) == 2 and vtn.event("ev-a") is None)
        vtn.server.add_raw_event(VEN_ID, cancelled)  # a VTN that repeats cancelled events
        vtn.add_event("ev-b", 1, soon(90))
        await until(lambda: ("ev-b", "optIn") in vtn.opts or ("ev-b", "optOut") in vtn.opts)
    assert ("ev-b", "optIn") in vtn.opts
    assert len(sink.of("ev-b")) == 1
    assert len(sink.of("ev-a")) == 2  # the event and its cancel, not again


# -- the mapping alone (openleadr's event dicts) ---------------------------------------------


def event_dict(
    levels: list[float], duration: timedelta = timedelta(hours=1), **targets: list[str]
) -> dict[str, Any]:
    start = datetime(2026, 7, 15, 6, 0, tzinfo=UTC)
    intervals = [
        {"dtstart": start + i * duration / len(levels), "signal_payload": level, "uid": i}
        for i, level in enumerate(levels)
    ]
    return {
        "event_descriptor": {"event_id": "e", "modification_number": 0, "event_status": "far"},
        "active_period": {"dtstart": start, "duration": duration},
        "event_signals": [
            {"signal_name": "SIMPLE", "signal_type": "level", "intervals": intervals}
        ],
        "targets_by_type": {"ven_id": [VEN_ID], **targets},
    }


def test_the_highest_simple_level_of_the_intervals_applies() -> None:
    mapped = map_event(event_dict([1, 3, 2]), config(1))
    assert isinstance(mapped, DemandResponseEvent)
    assert (mapped.strategy, mapped.offset, mapped.zones) == ("off", None, ())
    assert mapped.end - mapped.start == timedelta(hours=1)


def test_an_open_ended_event_or_level_zero_is_not_mapped() -> None:
    assert map_event(event_dict([2], duration=timedelta(0)), config(1)) == Unmapped(
        "no end (duration 0): the rules need one"
    )
    assert map_event(event_dict([0]), config(1)) == Unmapped(
        "SIMPLE level 0: normal operation, nothing asked"
    )


def test_group_ids_map_like_resources_and_unknown_ones_are_left_out() -> None:
    zones = {"floor-3": ("3F-*",), "east": ("3F-E*", "4F-E*")}
    settings = config(1, resource_zones=zones)
    mapped = map_event(
        event_dict([1], resource_id=["floor-3", "annex"], group_id=["east"]), settings
    )
    assert isinstance(mapped, DemandResponseEvent)
    assert mapped.zones == ("3F-*", "3F-E*", "4F-E*")
    assert map_event(event_dict([1], group_id=["annex"]), settings) == Unmapped(
        "targets annex, none of them in resource_zones"
    )


def test_a_malformed_event_is_opted_out_and_the_next_one_still_taken() -> None:
    sink = Sink()
    ven = OpenAdrVen(config(1), sink)
    bad = event_dict([1])
    bad["event_signals"][0]["intervals"][0]["signal_payload"] = "high"
    assert ven.handle_event(bad) == "optOut"
    assert ven.handle_event({"event_descriptor": {}}) == "optOut"
    good = event_dict([2])
    good["event_descriptor"]["modification_number"] = 1
    assert ven.handle_event(good) == "optIn"
    assert [g.id for g in sink.got] == ["e"]
    assert ven.health()["unmapped"] == 1
    assert ven.health()["errors"] == 1  # the descriptor without an id


async def test_the_report_queue_is_bounded_and_drops_the_oldest() -> None:
    counters = dict.fromkeys(COUNTERS, 0)
    queue = _ReportQueue(counters)
    for n in range(REPORT_QUEUE + 2):
        await queue.put(SimpleNamespace(n=n, intervals=[n]))
    await queue.put(SimpleNamespace(n=-1, intervals=[]))
    assert queue.qsize() == REPORT_QUEUE
    assert queue.get_nowait().n == 2
    assert (counters["reports_dropped"], counters["reports_skipped"]) == (2, 1)


# -- the report ----------------------------------------------------------------------------


async def test_the_shed_report_reaches_the_vtn(vtn: Vtn) -> None:
    start = soon(-30)
    figure = ShedFigure(
        event_id="ev-s",
        meter="meter-ac",
        start=start.timestamp(),
        end=(start + timedelta(hours=1)).timestamp(),
        until=(start + timedelta(minutes=30)).timestamp(),
        baseline_kwh=60.0,
        actual_kwh=42.5,
        reduction_kwh=17.5,
        reduction_kw=35.0,
        baseline_days=("2026-11-30", "2026-11-27"),
        complete=False,
    )
    shed = {"ev-s": figure}
    ven = OpenAdrVen(config(vtn.port), Sink(), shed.get)
    async with running(ven):
        assert sorted(vtn.offered) == ["actual", "baseline", "reduction"]
        await until(lambda: ven.health()["reports_skipped"] >= 1)  # nothing to say yet
        vtn.add_event("ev-s", 1, start, hours=1)
        await until(lambda: vtn.opts == [("ev-s", "optIn")])
        await until(lambda: len(vtn.reports) == 3)
    assert vtn.reports["reduction"][0] == (start, 35.0)
    assert vtn.reports["baseline"][0] == (start, 60.0)
    assert vtn.reports["actual"][0] == (start, 42.5)
    assert ven.health()["reports_sent"] >= 1
    assert ven.health()["openleadr_errors"] == 0


# -- registration --------------------------------------------------------------------------


async def test_registration_is_retried_until_the_vtn_answers_and_kept(tmp_path: Path) -> None:
    port = free_port()
    ven = OpenAdrVen(config(port, state_file="openadr.json"), Sink(), base_dir=tmp_path)
    await ven.start()
    try:
        await until(lambda: ven.health()["registration_failures"] >= 1)
        async with Vtn(port) as server:
            await asyncio.wait_for(ven.registered.wait(), 20)
            await ven.stop()  # before its VTN
            assert server.registrations[0].get("ven_id") is None  # a first registration
        assert json.loads((tmp_path / "openadr.json").read_text()) == {
            "ven_id": VEN_ID,
            "registration_id": REGISTRATION_ID,
        }
    finally:
        await ven.stop()
    again = OpenAdrVen(config(port, state_file="openadr.json"), Sink(), base_dir=tmp_path)
    async with Vtn(port) as server, running(again):
        assert server.registrations[0].get("ven_id") == VEN_ID  # offered again


# -- TLS and signed messages ---------------------------------------------------------------


def write_pki(folder: Path) -> dict[str, Path]:
    """A CA, the VTN's certificate for 127.0.0.1 and the VEN's client certificate (EC keys)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)

    def issue(
        name: str, key: Any, issuer: x509.Name | None, signer: Any, ca: bool
    ) -> x509.Certificate:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer or subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if name == "127.0.0.1":
            san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(name))])
            builder = builder.add_extension(san, critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue("test-ca", ca_key, None, ca_key, True)
    paths: dict[str, Path] = {"ca": folder / "ca.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for role, name in (("vtn", "127.0.0.1"), ("ven", "guanjia-test")):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue(name, key, ca.subject, ca_key, False)
        paths[f"{role}_cert"] = folder / f"{role}.pem"
        paths[f"{role}_key"] = folder / f"{role}.key"
        paths[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{role}_key"].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def fingerprint(path: Path) -> str:
    return str(utils.certificate_fingerprint(path.read_text()))


@pytest.fixture
def ven_lookup_restored() -> Iterator[None]:
    # openleadr keeps a VTN's ven_lookup on a class, for every later server of the process
    had = VTNService.__dict__.get("ven_lookup")
    yield
    if had is None:
        if "ven_lookup" in VTNService.__dict__:
            del VTNService.ven_lookup
    else:
        VTNService.ven_lookup = had


@pytest.mark.usefixtures("ven_lookup_restored")
async def test_over_tls_with_signed_messages_both_ways(tmp_path: Path) -> None:
    pki = write_pki(tmp_path)
    port = free_port()
    ven_print = fingerprint(pki["ven_cert"])
    server = OpenADRServer(
        vtn_id="TEST-VTN",
        http_host="127.0.0.1",
        http_port=port,
        cert=str(pki["vtn_cert"]),
        key=str(pki["vtn_key"]),
        http_cert=str(pki["vtn_cert"]),
        http_key=str(pki["vtn_key"]),
        http_ca_file=str(pki["ca"]),
        requested_poll_freq=timedelta(seconds=1),
        show_fingerprint=False,
        ven_lookup=lambda ven_id: (
            {
                "ven_id": VEN_ID,
                "ven_name": "guanjia-test",
                "fingerprint": ven_print,
                "registration_id": REGISTRATION_ID,
            }
            if ven_id == VEN_ID
            else None
        ),
    )
    vtn = Vtn.__new__(Vtn)  # the recording half of Vtn around this TLS server
    vtn.port, vtn.server, vtn.opts, vtn.registrations = port, server, [], []
    vtn.offered, vtn.reports = [], {}
    server.add_handler("on_create_party_registration", vtn._register)
    tls = {
        "vtn_url": f"https://127.0.0.1:{port}{PREFIX}",
        "cert": "ven.pem",
        "key": "ven.key",
        "ca_file": "ca.pem",
    }
    sink = Sink()
    async with vtn:
        right = OpenAdrVen(
            config(port, **tls, vtn_fingerprint=fingerprint(pki["vtn_cert"])),
            sink,
            base_dir=tmp_path,
        )
        async with running(right):
            vtn.add_event("ev-tls", 1, soon())
            await until(lambda: vtn.opts == [("ev-tls", "optIn")])
        assert [g.id for g in sink.got] == ["ev-tls"]

        wrong = OpenAdrVen(
            config(port, **tls, vtn_fingerprint="00:11:22:33:44:55:66:77:88:99"),
            sink,
            base_dir=tmp_path,
        )
        await wrong.start()
        try:  # the VTN's signed answers are refused: no registration
            await until(lambda: wrong.health()["registration_failures"] >= 2)
            assert not wrong.registered.is_set()
        finally:
            await wrong.stop()


# -- config ---------------------------------------------------------------------------------


def problems(text: str) -> list[str]:
    data = yaml.safe_load(text)
    with pytest.raises(ValidationError) as err:
        OpenAdrConfig.model_validate(data["openadr"])
    found = problems_from_validation(
        err.value, OpenAdrConfig, data["openadr"], "site.yaml", LineMap.of(text), ("openadr",)
    )
    return [str(p) for p in found]


def test_a_bad_vtn_url_is_one_clear_line() -> None:
    (line,) = problems("openadr:\n  vtn_url: vtn.example.com/OpenADR2\n  ven_name: b\n")
    assert line == (
        "site.yaml:2: openadr.vtn_url: 'vtn.example.com/OpenADR2' is not a VTN URL; "
        "write https://host/OpenADR2/Simple/2.0b"
    )


def test_plain_http_to_another_host_is_refused() -> None:
    (line,) = problems("openadr:\n  vtn_url: http://10.0.0.9/OpenADR2\n  ven_name: b\n")
    assert line.startswith("site.yaml:2: openadr.vtn_url: 'http://10.0.0.9/OpenADR2' is plain")
    assert "allow_plain_http: true" in line


def test_an_unknown_strategy_is_one_clear_line() -> None:
    text = (
        "openadr:\n  vtn_url: https://vtn.example.com/OpenADR2/Simple/2.0b\n  ven_name: b\n"
        "  levels:\n    3: {strategy: shutdown}\n"
    )
    (line,) = problems(text)
    assert line == (
        "site.yaml:4: openadr.levels[3].strategy: unknown strategy 'shutdown'; "
        "use one of offset, off, precool_off"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"levels": {0: {"strategy": "off"}}}, "SIMPLE levels are 1, 2 and 3"),
        ({"levels": {3: {"strategy": "off", "offset_c": 2}}}, "remove offset_c"),
        ({"cert": "ven.pem"}, "cert and key go together"),
        ({"vtn_fingerprint": "not-one"}, "is not an OpenADR fingerprint"),
        ({"report": {"min_sampling": "2h"}}, "swap them"),
        ({"resource_zones": {"floor-3": []}}, "list the zone globs"),
    ],
)
def test_config_mistakes_name_the_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OpenAdrConfig.model_validate({"vtn_url": "https://vtn.example/x", "ven_name": "b"} | fields)


def test_the_defaults_map_simple_levels_to_one_two_degrees_and_off() -> None:
    levels = OpenAdrConfig(vtn_url="https://vtn.example/x", ven_name="b").levels
    assert {k: (v.strategy, v.offset_c) for k, v in levels.items()} == {
        1: ("offset", 1.0),
        2: ("offset", 2.0),
        3: ("off", None),
    }
