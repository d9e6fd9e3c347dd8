"""The sites the gateway benches run (bench_rules, bench_loop_lag, bench_poll_cpu).

Meters with bench.common's `bench_meter` profile (one read of 10 holding registers: six uint16
and two float32 values) on the fake Modbus farm, one meter per port, written to the fake
InfluxDB through the v2 write API; optionally threshold rules, each scoped to its meter by id.
The site file and the profile are written as YAML and loaded by gateway.config_load.load_site,
as `guanjia run` loads them, so the gateway measured is the one an integrator would run.

Only one rule per meter can fire: `power_w` above FLIP_ABOVE. The farm's flipping ports
(bench.common.ModbusFarm(flip=...)) serve every register 0x0200 higher for half of each cycle,
which moves power_w from about 8.4 to about 134 and back: a raise, then a clear. The other
rules (limits far from both images) are evaluated on every reading and never cross.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    HOST,
    _Child,
    _Helper,
    bench_profile_data,
    cpu_seconds,
    modbus_of,
    stop_driver,
)
from gateway.config_load import LoadedSite, load_site
from gateway.service import Gateway

DEVICES = 200
INTERVAL = 0.1  # seconds between polls of one meter
POINTS = 8  # values per poll (bench_meter)
RULES_PER_DEVICE = 10  # 2,000 rules on 200 meters
PROFILE = "bench_meter"
SITE_ID = "bench"
FLIP_POINT = "power_w"
FLIP_ABOVE = 50.0  # between the two images of a flipping port (about 8.4 and 134)
FLIP_HYSTERESIS = 5.0
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # gateway/cli.py's


def device_ids(count: int = DEVICES) -> list[str]:
    return [f"meter-{i:04d}" for i in range(count)]


def flip_rule_id(device: str) -> str:
    return f"{device}-power-high"


def rule_entries(ids: Sequence[str], per_device: int) -> list[dict[str, Any]]:
    """`per_device` (at most 10) threshold rules per meter: first the one that fires, then
    rules that are evaluated on every reading and never cross."""
    entries: list[dict[str, Any]] = []
    for d in ids:
        scope = {"devices": [d]}
        rules: list[tuple[str, str, dict[str, float]]] = [
            (flip_rule_id(d), FLIP_POINT, {"above": FLIP_ABOVE, "hysteresis": FLIP_HYSTERESIS}),
            (f"{d}-value-0", "value_0", {"above": 60000.0, "below": 1000.0}),
            (f"{d}-energy-high", "energy_kwh", {"above": 1e6, "hysteresis": 10.0}),
            (f"{d}-energy-low", "energy_kwh", {"below": -1.0}),
            (f"{d}-power-low", FLIP_POINT, {"below": -1.0}),
        ]
        rules += [
            (f"{d}-value-{i}", f"value_{i}", {"above": 60000.0, "below": 1000.0})
            for i in range(1, 6)
        ]
        entries += [
            {"id": rule_id, "kind": "threshold", "scope": scope, "point": point, **limits}
            for rule_id, point, limits in rules[:per_device]
        ]
    return entries


def write_site(
    directory: Path,
    ports: Sequence[int],
    influx_url: str,
    *,
    rules: int,
    interval: float = INTERVAL,
) -> Path:
    """A site file (and its profile) in `directory`: one meter per port, polled every
    `interval`, `rules` threshold rules per meter (0: a site without rules); its path."""
    directory.mkdir(parents=True, exist_ok=True)
    profiles = directory / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / f"{PROFILE}.yaml").write_text(
        yaml.safe_dump(bench_profile_data(), sort_keys=False), encoding="utf-8"
    )
    ids = device_ids(len(ports))
    site = {
        "site": {"name": "bench", "id": SITE_ID, "tags": {"building": "main"}},
        "influxdb": {"api": "v2", "url": influx_url, "org": "bench", "bucket": "bench"},
        "profile_dirs": ["profiles"],
        "spool": {"path": "var/spool"},
        "alarms": {"store": "var/alarms.sqlite"},
        "rules": rule_entries(ids, rules),
        "devices": [
            {
                "id": d,
                "profile": PROFILE,
                "modbus": {"transport": "tcp", "host": HOST, "port": port, "unit": 1},
                "poll": interval,
                "tags": {"floor": f"{i // 100 + 1}F", "zone": f"{i // 100 + 1}{i % 100:02d}"},
            }
            for i, (d, port) in enumerate(zip(ids, ports, strict=True))
        ],
    }
    path = directory / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False), encoding="utf-8")
    return path


def load(
    directory: Path,
    ports: Sequence[int],
    influx_url: str,
    *,
    rules: int,
    interval: float = INTERVAL,
) -> LoadedSite:
    return load_site(write_site(directory, ports, influx_url, rules=rules, interval=interval))


@contextlib.contextmanager
def gateway_logs(path: str = os.devnull) -> Iterator[None]:
    """The gateway's logging as `guanjia run` sets it up (CLI format, INFO), into `path`
    instead of stderr: it logs every device coming online and every alarm transition."""
    logger = logging.getLogger("guanjia")
    old = logger.level, logger.propagate
    with open(path, "a", encoding="utf-8") as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old[0])
            logger.propagate = old[1]


async def stop_gateway(gateway: Gateway) -> None:
    """Gateway.stop(), with the pollers stopped first by bench.common.stop_driver (bounded on
    Python 3.11, where a cancellation can be lost)."""
    await stop_driver(modbus_of(gateway))
    await asyncio.wait_for(gateway.stop(), timeout=30)


async def tick_cpu(gateway: Gateway, *, every_state: bool) -> float:
    """CPU of this process (all threads) for one tick of the rules runtime; `every_state`: as
    after a minute of moving values, when the tick rewrites every rule's saved state."""
    service = gateway.alarms
    assert service is not None
    if every_state:
        service._states_saved = 0.0
        service.store.store._rule_state_cache.clear()
    started = cpu_seconds()
    await service.tick(time.time())
    return cpu_seconds() - started


async def state_save_cpu(gateway: Gateway) -> float:
    """The CPU a running gateway spends once a minute rewriting its rules' states: a tick
    that saves every state less a plain tick, with the pollers stopped (best of two each)."""
    if gateway.alarms is None:
        return 0.0
    await stop_driver(modbus_of(gateway))
    await asyncio.sleep(0.2)
    plain = min([await tick_cpu(gateway, every_state=False) for _ in range(2)])
    full = min([await tick_cpu(gateway, every_state=True) for _ in range(2)])
    return max(0.0, full - plain)


class Process(_Helper):
    """A gateway (bench/gateway_proc.py) or the bare reference (bench/bare_poller.py) in a
    process of its own; `counters()` asks it for its own CPU (getrusage), clock and polls."""

    def __init__(self, script: str, args: Sequence[str]) -> None:
        self._child = _Child(script, args)
        self.pid = int(self._child.hello["pid"])

    def counters(self) -> dict[str, float]:
        return {k: float(v) for k, v in self._child.request("counters").items()}

    def state_save_cpu(self) -> float:
        """A gateway's state_save_cpu (it stops polling)."""
        return float(self._child.request("state-save")["save_cpu"])


def gateway_process(site: Path, *, health_interval: float = 30.0, log: str = os.devnull) -> Process:
    args = [str(site), "--health-interval", str(health_interval), "--log", log]
    return Process("gateway_proc.py", args)


def bare_process(ports: Sequence[int], *, interval: float = INTERVAL) -> Process:
    return Process("bare_poller.py", ["--interval", str(interval), *map(str, ports)])


def fs_type(path: Path) -> str:
    """The file system holding `path` (from /proc/mounts): tmpfs would make fsync free."""
    best, kind = "", "?"
    with contextlib.suppress(OSError), open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            parts = line.split()
            if len(parts) >= 3 and str(path).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def loadavg() -> str:
    try:
        with open("/proc/loadavg", encoding="utf-8") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"
