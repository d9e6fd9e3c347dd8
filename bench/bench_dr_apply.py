"""Result `dr_apply_s`: a demand-response event applied to 200 AC units behind 4 CoolMasterNet
gateways that accept 5 writes a second each, against the rate model's minimum (issue: "from an
event's start to every one of 200 AC units confirmed at its new setpoint ... target <= 1.2 x
that minimum").

The devices: GATEWAYS simulated CoolMasterNets (simulator/server.py serving the
`coolmaster_indoor` profile, one unit id, indoor unit n at base 16 n), UNITS_PER_GATEWAY indoor
units each (simulator/models AcUnit: on, cooling, setpoint 26 °C), in a process of their own
(`--serve`), so the devices' work is not the gateway's.

The gateway: gateway.service.Gateway on a site file written here and loaded as `guanjia run`
loads it: 200 `coolmaster_indoor` devices (Modbus TCP, `max_writes_per_s: 5` on every path,
polled every POLL_S), a `demand_response` rule (offset 1 °C) over them, `commands.allow` for
their setpoints. Once every unit has been read, the event (start now) goes in through
AlarmService.demand_response_input, the entry of every source (MQTT `dr/event`, the webhook,
OpenADR). The rule takes it and writes on its next tick; every write goes through the one
command path (CommandRouter, the allowlist, the audit) to the Modbus driver, which paces each
path's writes and confirms each by reading it back.

Timed: from the rules' first command (their first action on the event: the `rule command` log
line of gateway/alarm_service.py) to the audit record of the 200th command accepted, i.e.
confirmed by its read-back. Checked afterwards from the devices' side: every unit's setpoint is
27 °C, each written once, and no two writes on one gateway closer than 1/5 s.

Reference, the same run: the rate model's minimum, (W - 1) / R + one write with its read-back
(W writes per gateway at R writes/s: the first write goes out at once, the last (W - 1) / R
later, then takes its own time), where one write with its read-back is measured here after the
event: a command through the same path to one idle unit, the median of ONE_WRITE_REPEATS.
value = dr_apply_s / minimum, target <= 1.2.

Also printed: the wait from the event's input to the rules' first command (the rules' tick),
and what the gateway's health counts (writes, confirmed, rejected by read-back, rate waits).

The gateway is measured as shipped. The rules runtime runs up to `max_commands` (1000) rule
commands at once (gateway/alarm_service.py `_command`): every unit's command waits on its own
line, which takes them at its rate. With the earlier cap of 100, the units listed gateway by
gateway, the last gateway's first write started 3.4 s late (13.2 s, 1.34 x the minimum): the
reason the cap was raised.

    .venv/bin/python -m bench.bench_dr_apply                  # one run
    .venv/bin/python -m bench.bench_dr_apply --interleaved    # units listed across gateways
    .venv/bin/python -m bench.run dr_apply                    # into results.json
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import yaml

from bench.common import HOST, ROOT, Result, end_child, median, modbus_of, ms, result
from core.types import Command, Sample
from gateway.config_load import load_site
from gateway.messages import AuditRecord
from gateway.service import Gateway
from rules.model import DemandResponseEvent

GATEWAYS = 4
UNITS_PER_GATEWAY = 50
UNITS = GATEWAYS * UNITS_PER_GATEWAY
WRITES_PER_S = 5.0
POLL_S = 5.0
BASE_SETPOINT = 26.0
OFFSET = 1.0
TARGET = 1.2
ONE_WRITE_REPEATS = 8
DEADLINE_S = 120.0  # the event gives up after this (a stuck path, refused commands)
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def unit_id(gateway: int, unit: int) -> str:
    return f"ac-g{gateway}-{unit:02d}"


# -- the simulated CoolMasterNets, in their own process ------------------------------------


async def _serve_devices(gateways: int, units: int) -> None:
    """Serve ``gateways`` CoolMasterNets of ``units`` indoor units each; print their ports as
    one JSON line; answer each stdin line with one JSON line of every unit's setpoint and the
    times (epoch s) its setpoint was written; stop when stdin closes."""
    from drivers.modbus.profile import Profile
    from gateway.config_load import BUILTIN_PROFILES, load_profile
    from simulator.clock import SimClock
    from simulator.models import MODE_COOL, AcUnit
    from simulator.server import SimulatedDevice, serve

    profile = load_profile(BUILTIN_PROFILES / "coolmaster_indoor.yaml")
    assert isinstance(profile, Profile)
    clock = SimClock()
    models: list[list[AcUnit]] = []
    servers = []
    for g in range(gateways):
        row = [
            AcUnit(
                profile, clock, on=True, mode=MODE_COOL, setpoint=BASE_SETPOINT, seed=g * 100 + u
            )
            for u in range(units)
        ]
        models.append(row)
        devices = [
            SimulatedDevice(profile, m, unit=1, base=16 * (u + 1), name=unit_id(g, u))
            for u, m in enumerate(row)
        ]
        servers.append(await serve(devices, HOST))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ports": [s.port for s in servers]}), flush=True)
    try:
        while await reader.readline():
            report = [
                [
                    {
                        "setpoint": m.setpoint,
                        "writes": [
                            ts.timestamp() for ts, point, _v in m.writes if point == "setpoint_degc"
                        ],
                    }
                    for m in row
                ]
                for row in models
            ]
            print(json.dumps(report), flush=True)
    finally:
        for server in servers:
            await server.stop()


class Devices:
    """The simulator process: started, asked for its units' state, stopped."""

    def __init__(self, gateways: int, units: int) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.bench_dr_apply",
                "--serve",
                str(gateways),
                str(units),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self._line()
        self.ports: list[int] = ready["ports"]

    def _line(self) -> Any:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        if not line:
            raise RuntimeError(f"the simulated gateways exited ({self.proc.wait()})")
        return json.loads(line)

    def state(self) -> list[list[dict[str, Any]]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("report\n")
        self.proc.stdin.flush()
        state: list[list[dict[str, Any]]] = self._line()
        return state

    def stop(self) -> None:
        end_child(self.proc)


# -- the gateway ------------------------------------------------------------------------


def site_file(directory: Path, ports: Sequence[int], interleaved: bool = False) -> Path:
    """The site: its units gateway by gateway (as an integrator lists them, by floor), or
    ``interleaved`` (the first unit of each gateway, then the second ...)."""
    devices = [
        {
            "id": unit_id(g, u),
            "profile": "coolmaster_indoor",
            "modbus": {
                "transport": "tcp",
                "host": HOST,
                "port": port,
                "unit": 1,
                "base": 16 * (u + 1),
                "max_writes_per_s": WRITES_PER_S,
            },
            "poll": f"{POLL_S:g}s",
            "tags": {"building": "main", "floor": str(g + 1), "zone": f"{g + 1}{u:02d}"},
        }
        for g, port in enumerate(ports)
        for u in range(UNITS_PER_GATEWAY)
    ]
    if interleaved:
        devices = [
            devices[g * UNITS_PER_GATEWAY + u]
            for u in range(UNITS_PER_GATEWAY)
            for g in range(len(ports))
        ]
    site = {
        "site": {"name": "需求响应基准", "id": "dr-bench"},
        "spool": {"path": "spool"},
        "alarms": {"store": "alarms.sqlite"},
        "commands": {"allow": ["ac-*:setpoint_degc"]},
        "devices": devices,
        "rules": [{"id": "dr", "kind": "demand_response", "offset": OFFSET}],
    }
    path = directory / "site.yaml"
    path.write_text(yaml.safe_dump(site, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class _FirstRuleCommand(logging.Handler):
    """The moment the rules first act on the event: their first `rule command` log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.at: float | None = None
        self.epoch = 0.0  # the same moment by the wall clock, for the devices' times

    def emit(self, record: logging.LogRecord) -> None:
        if self.at is None and record.getMessage().startswith("rule command"):
            self.at = time.monotonic()
            self.epoch = record.created


@dataclass
class Run:
    input_at: float = 0.0
    first_command_at: float = 0.0
    first_command_epoch: float = 0.0
    done_at: float = 0.0
    accepted: dict[str, float] = field(default_factory=dict)  # device -> its audit's moment
    failed: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    one_write: list[float] = field(default_factory=list)
    closest_sent: float = 0.0  # the pacers' own: the shortest time between two writes sent
    health: dict[str, Any] = field(default_factory=dict)
    state: list[list[dict[str, Any]]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.done_at - self.first_command_at


async def _measure(site: Path, devices: Devices) -> Run:
    run = Run()
    gateway = Gateway(load_site(site), health_interval=3600)
    assert gateway.alarms is not None
    read: set[str] = set()

    def on_sample(sample: Sample) -> None:
        if "setpoint_degc" in sample.values:
            read.add(sample.device)

    def on_audit(record: AuditRecord) -> None:
        if record.command.origin != "rule:dr":
            return
        device = record.command.device
        if record.outcome == "accepted":
            run.accepted[device] = time.monotonic()
        elif record.outcome == "failed":
            run.failed.append(f"{device}: {record.reason}")
        else:
            run.refused.append(f"{device}: {record.reason}")

    gateway.bus.subscribe(Sample, on_sample, name="bench")
    gateway.bus.subscribe(AuditRecord, on_audit, name="bench")
    first = _FirstRuleCommand()
    # The rules' INFO lines reach only that handler; their warnings still show.
    alarms_log = logging.getLogger("guanjia.alarms")
    shown = logging.StreamHandler()
    shown.setLevel(logging.WARNING)
    shown.setFormatter(logging.Formatter(LOG_FORMAT))
    level, propagate = alarms_log.level, alarms_log.propagate
    alarms_log.setLevel(logging.INFO)
    alarms_log.propagate = False
    alarms_log.addHandler(first)
    alarms_log.addHandler(shown)
    await gateway.start()
    try:
        deadline = time.monotonic() + 3 * POLL_S + 10
        while len(read) < UNITS:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(read)} of {UNITS} units read before the event")
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # the rules' inbox has the last readings
        now = datetime.now(UTC)
        event = DemandResponseEvent("bench-dr", now, now + timedelta(hours=1), OFFSET)
        run.input_at = time.monotonic()
        answer = gateway.alarms.demand_response_input(event)
        if answer != "accepted":
            raise RuntimeError(f"the event was not accepted: {answer}")
        deadline = time.monotonic() + DEADLINE_S
        while len(run.accepted) + len(run.failed) + len(run.refused) < UNITS:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        if first.at is None:
            raise RuntimeError("the rules issued no command")
        run.first_command_at = first.at
        run.first_command_epoch = first.epoch
        run.done_at = max(run.accepted.values(), default=run.first_command_at)
        # One write with its read-back, on an idle path: the model's other term.
        await asyncio.sleep(2 / WRITES_PER_S)
        for k in range(ONE_WRITE_REPEATS):
            device = unit_id(k % GATEWAYS, k // GATEWAYS)
            t0 = time.perf_counter()
            res = await gateway.commands.execute(
                Command(device, "setpoint_degc", BASE_SETPOINT + OFFSET, "bench")
            )
            run.one_write.append(time.perf_counter() - t0)
            if not res.ok:
                raise RuntimeError(f"one write to {device} failed: {res.reason}")
        run.health = gateway.health()
        run.closest_sent = min(
            link.pacer.closest_s
            for link in modbus_of(gateway).links.values()
            if link.pacer is not None
        )
        run.state = await asyncio.to_thread(devices.state)
    finally:
        alarms_log.removeHandler(first)
        alarms_log.removeHandler(shown)
        alarms_log.setLevel(level)
        alarms_log.propagate = propagate
        await asyncio.wait_for(gateway.stop(), timeout=30)
    return run


def _check_devices(run: Run) -> tuple[float, list[tuple[float, float]]]:
    """Every unit at its new setpoint; of the event's writes (the probes come after), the
    closest two on any gateway, as the devices saw them, and each gateway's first and last
    write after the rules' first command."""
    target = BASE_SETPOINT + OFFSET
    wrong = [
        f"{unit_id(g, u)}={unit['setpoint']}"
        for g, row in enumerate(run.state)
        for u, unit in enumerate(row)
        if unit["setpoint"] != target
    ]
    if wrong:
        raise RuntimeError(f"{len(wrong)} units not at {target:g} °C: {', '.join(wrong[:5])}")
    closest = float("inf")
    spans = []
    for row in run.state:
        times = sorted(t for unit in row for t in unit["writes"])
        event = times[:UNITS_PER_GATEWAY]
        spans.append((event[0] - run.first_command_epoch, event[-1] - run.first_command_epoch))
        closest = min(closest, *(b - a for a, b in itertools.pairwise(event)))
    return closest, spans


def measure(interleaved: bool = False) -> Run:
    """One event on a fresh gateway and fresh devices; ``own_cap``: with the rules runtime's
    own limit of commands at once, else with it raised to the unit count."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    devices = Devices(GATEWAYS, UNITS_PER_GATEWAY)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-dr-") as tmp:
            site = site_file(Path(tmp), devices.ports, interleaved)
            return asyncio.run(_measure(site, devices))
    finally:
        devices.stop()


def report(run: Run) -> tuple[float, float]:
    """Print the run; (dr_apply_s, the model's minimum)."""
    h = run.health
    print(
        f"   {len(run.accepted)} accepted, {len(run.failed)} failed, {len(run.refused)} refused "
        f"of {UNITS} rule commands"
    )
    for line in (run.refused + run.failed)[:3]:
        print(f"     e.g. {line}")
    print(
        f"   event in -> first rule command {ms(run.first_command_at - run.input_at)} "
        "(the rules act on their next tick)"
    )
    one = median(run.one_write)
    minimum = (UNITS_PER_GATEWAY - 1) / WRITES_PER_S + one
    print(
        f"   one write with its read-back: median {ms(one)} of {len(run.one_write)} "
        f"(min {ms(min(run.one_write))}, max {ms(max(run.one_write))})"
    )
    print(
        f"   health: modbus_writes {h['modbus_writes']}, confirmed "
        f"{h['modbus_writes_confirmed']}, rejected by read-back "
        f"{h['modbus_writes_rejected_by_readback']}, failed {h['modbus_writes_failed']}, "
        f"rate waits {h['modbus_write_rate_waits']} ({h['modbus_write_rate_wait_ms'] / 1000:.1f}"
        " s together)"
    )
    if len(run.accepted) < UNITS:
        print(f"   NOT every unit confirmed: {UNITS - len(run.accepted)} missing")
        return float("inf"), minimum
    closest, spans = _check_devices(run)
    print(
        f"   devices: all {UNITS} at {BASE_SETPOINT + OFFSET:g} °C; closest two writes on a "
        f"gateway {ms(closest)} as the devices stamped them (one process serves all four "
        f"gateways: its own delays show as jitter), {ms(run.closest_sent)} as the gateway sent "
        f"them (spacing {ms(1 / WRITES_PER_S)})"
    )
    print(
        "   each gateway's first and last write after the first rule command: "
        + ", ".join(f"{a:.2f}..{b:.2f}" for a, b in spans)
        + " s"
    )
    seconds = run.seconds
    print(
        f"   dr_apply_s {seconds:.3f} s, minimum (W-1)/R + one write = "
        f"{UNITS_PER_GATEWAY - 1}/{WRITES_PER_S:g} + {one:.4f} = {minimum:.3f} s, "
        f"ratio {seconds / minimum:.3f} (target <= {TARGET:g})"
    )
    return seconds, minimum


def run() -> dict[str, Result]:
    seconds, minimum = report(measure())
    return {
        "dr_apply_s": result(seconds / minimum, f"<= {TARGET:g}"),
        "dr_apply_seconds": result(seconds, "information: dr_apply_s in seconds", "s"),
        "dr_apply_min_s": result(minimum, "information: the rate model's minimum", "s"),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--serve", nargs=2, type=int, metavar=("GATEWAYS", "UNITS"))
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="list the units across the gateways (the first of each, then the second...)",
    )
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve_devices(*args.serve))
        return
    report(measure(args.interleaved))


if __name__ == "__main__":
    main()
