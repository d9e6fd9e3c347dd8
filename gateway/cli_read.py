"""`guanjia read SITE DEVICE`: one device's values once, for the integrator at the line.

Modbus devices are polled once through their poller (with the request count and time, and each
bad point explained from its profile). Devices of the other polled or streamed drivers (DL/T 645
meters, camera event streams) are read through their driver's runtime, the one the gateway
runs, until their first acquisition or `--wait` seconds. MQTT devices publish when they choose
and are watched with `guanjia run SITE --view`.

Exit status: 0 every point good, 2 the device gave nothing, 3 it answered but some points are
bad (each named on stderr, so a script notices).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping

from core.types import Sample, Value
from drivers.contract import PointMeta, RuntimeContext
from drivers.registry import DRIVERS
from gateway.config_load import LoadedSite


def _line(name: str, value: Value, unit: str, extra: str) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f"  {name:<36} {text:>14} {unit:<6} {extra}"


def _verdict(device: str, why: Mapping[str, str], total: int) -> int:
    if why:
        print(f"{device}: {len(why)} of {total} points are bad:", file=sys.stderr)
        for name, text in why.items():
            print(f"  {name}: {text}", file=sys.stderr)
        return 3
    return 0


async def read_device(loaded: LoadedSite, device_id: str, as_json: bool, wait: float) -> int:
    dev = loaded.device(device_id)
    kind = next(iter(dev.connections()), "")
    if kind == "modbus":
        return await _read_modbus(loaded, device_id, as_json)
    if kind == "mqtt" or kind not in DRIVERS:
        print(
            f"{dev.id} is an MQTT device, which publishes when it chooses: its values are in "
            "`guanjia run SITE --view`",
            file=sys.stderr,
        )
        return 2
    return await _read_runtime(loaded, kind, device_id, as_json, wait)


async def _read_runtime(
    loaded: LoadedSite, kind: str, device_id: str, as_json: bool, wait: float
) -> int:
    """The driver's own runtime for this one device, until its first Sample or `wait`."""
    driver = DRIVERS[kind]
    entries = [e for e in loaded.driver_devices(kind) if e.id == device_id]
    if not entries:
        print(f"{device_id} is disabled in the site file", file=sys.stderr)
        return 2
    entry = entries[0]
    got: asyncio.Future[Sample] = asyncio.get_running_loop().create_future()

    def emit(sample: Sample) -> None:
        if sample.device == device_id and not got.done() and (sample.values or sample.bad):
            got.set_result(sample)

    runtime = driver.runtime(
        RuntimeContext(entries, emit, loaded.site.site.timezone, secrets=loaded.secrets)
    )
    runtime.start()
    try:
        sample = await asyncio.wait_for(got, wait)
    except TimeoutError:
        problems = "; ".join(runtime.problems()) or "no answer"
        status = next((s for s in runtime.statuses() if s.device == device_id), None)
        detail = status.last_error if status is not None and status.last_error else problems
        print(f"{device_id} gave nothing within {wait:g} s: {detail}", file=sys.stderr)
        return 2
    finally:
        await runtime.stop()
    if not sample.values:  # every point bad: the device did not answer
        status = next((s for s in runtime.statuses() if s.device == device_id), None)
        reasons = sorted(set(sample.bad.values()))
        detail = status.last_error if status is not None and status.last_error else ""
        print(f"{device_id} did not answer: {detail or ', '.join(reasons)}", file=sys.stderr)
        return 2
    metas: dict[str, PointMeta] = driver.describe(entry.profile, entry.points)
    if as_json:
        print(json.dumps({"values": dict(sample.values), "bad": dict(sample.bad)}))
    else:
        print(f"{device_id} ({entry.profile.name}, {driver.title})")
        for name, value in sample.values.items():
            meta = metas.get(name)
            unit, extra = (meta.unit, meta.label(value)) if meta is not None else ("", "")
            print(_line(name, value, unit, extra))
        for name, reason in sample.bad.items():
            print(f"  {name:<36} {'BAD':>14} {'':<6} {reason}")
    return _verdict(device_id, sample.bad, len(sample.values) + len(sample.bad))


async def _read_modbus(loaded: LoadedSite, device_id: str, as_json: bool) -> int:
    """Poll once through the device's poller: requests, time, every bad point explained."""
    from drivers.modbus.codec import explain, label
    from drivers.modbus.derived import explain as explain_derived
    from drivers.modbus.driver import ModbusDevice, ModbusDriver

    dev = loaded.device(device_id)
    conn = dev.connection("modbus")
    devices = [
        ModbusDevice(e.id, e.profile, e.connection, e.poll, e.points)
        for e in loaded.driver_devices("modbus")
        if e.id == dev.id
    ]
    driver = ModbusDriver(devices, lambda _s: None)
    poller = driver.pollers[dev.id]
    try:
        sample = await poller.poll_once()
    finally:
        await driver.stop()
    specs = {spec.name: spec for spec in poller.plan.specs}
    derived = poller.plan.derived  # computed points: no registers of their own
    why = {
        name: explain(specs[name], reason) if name in specs else explain_derived(reason) or reason
        for name, reason in sample.bad.items()
    }
    if as_json:
        out = {"values": sample.values, "bad": sample.bad, "why": why}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(
            f"{dev.id} ({dev.profile}, unit {conn.unit}) — "
            f"{poller.stats.requests} requests, {poller.stats.last_poll_s * 1000:.1f} ms"
        )
        for spec in poller.plan.specs:
            if spec.name in sample.values:
                value = sample.values[spec.name]
                print(_line(spec.name, value, spec.unit, label(spec, value)))
            elif spec.name in why:
                print(f"  {spec.name:<36} {'BAD':>14} {'':<6} {why[spec.name]}")
        for d in derived:
            if d.name in sample.values:
                print(_line(d.name, sample.values[d.name], d.unit, ""))
            elif d.name in why:
                print(f"  {d.name:<36} {'BAD':>14} {'':<6} {why[d.name]}")
    if poller.stats.online is False:
        print(f"{dev.id} did not answer: {poller.stats.last_error}", file=sys.stderr)
        return 2
    return _verdict(dev.id, why, len(specs) + len(derived))
