"""The virtual building: a model per device of a site file, served where the site expects it:
Modbus devices by simulator.server, DL/T 645 meters by simulator.dlt645_meter (MQTT devices are
simulator.mqtt's).

Run the demo's building (config/demo-site.yaml) until Ctrl-C, an hour of building per minute:

    .venv/bin/python -m simulator.building config/demo-site.yaml --speed 60
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from drivers.dlt645.profile import Dlt645Profile
from drivers.modbus.overrides import apply_overrides
from drivers.modbus.profile import Profile
from simulator.clock import SimClock
from simulator.dlt645_meter import SimulatedMeter, serve_tcp
from simulator.models import (
    MODE_COOL,
    MODE_HEAT,
    AcUnit,
    DeviceModel,
    EvCharger,
    MeterShape,
    OfficeMeter,
    PvInverter,
    StaticModel,
    WaterMeter,
)
from simulator.models.meters import HvacMeter
from simulator.server import (
    Framer,
    RunningServer,
    SimulatedDevice,
    is_loopback,
    serve,
)
from simulator.site import BuildingSite, SiteDevice, read_site
from simulator.streams.building import StreamBuilding

log = logging.getLogger("guanjia.simulator")

# Peak active power of a meter by its sub-metering `use` tag (W): a ~10 000 m² office block.
METER_PEAK_W: dict[str, float] = {
    "total": 120_000.0,
    "hvac": 45_000.0,
    "lighting_sockets": 25_000.0,
    "lighting": 18_000.0,
    "sockets": 12_000.0,
    "power": 20_000.0,  # lifts, pumps
    "special": 15_000.0,  # kitchen, server room
}
METER_SHAPE: dict[str, MeterShape] = {
    "hvac": "hvac",
    "lighting_sockets": "lighting",
    "lighting": "lighting",
    "sockets": "lighting",
}
# The base load of an A/C meter (``use: hvac``) on a site with A/C units: controls, pumps and
# ventilation on its circuit; the units' draw comes on top (simulator.models.meters.HvacMeter).
HVAC_BASE_W = 2_000.0
# Rated AC power of a PV inverter by profile (W).
PV_RATED_W: dict[str, float] = {"huawei_sun2000": 50_000.0}
PV_DEFAULT_RATED_W = 30_000.0


@dataclass
class DeviceSim:
    """A site device with the profile and the model that will simulate it."""

    config: SiteDevice
    profile: Profile
    model: DeviceModel


def _seed(base: int, device_id: str) -> int:
    # Stable across runs and Python versions (unlike hash()), different per device.
    return base * 1_000_003 + zlib.crc32(device_id.encode())


def _is_server_room(dev: SiteDevice) -> bool:
    use = dev.tags.get("use", "")
    zone = dev.tags.get("zone", "")
    return use in ("server_room", "it") or zone.startswith("srv")


def models_for_site(site: BuildingSite, clock: SimClock, *, seed: int = 0) -> list[DeviceSim]:
    """Choose and build a model for every enabled Modbus device of a site.

    Meters (kind ``meter``) get an OfficeMeter sized by their ``use`` tag, except that on a site
    with A/C units a ``use: hvac`` meter gets an HvacMeter: a small base plus what the units of
    its floor draw (all the site's units where its floor has none); PV inverters a
    PvInverter (the Huawei one sees the ``use: total`` meter as its grid meter's load); A/C
    units (kind ``hvac``) an AcUnit, a server room's (``zone: srv-*`` or ``use: server_room``)
    running at 22 °C with 10 °C of heat gain, the others alternating on/off with setpoints
    that give the A/C policy something to correct; water meters (``water_meter``) a WaterMeter on
    the main supply, EV chargers (``ev_charger``) an EvCharger with one car a working day. Other
    kinds get a StaticModel (zeros).
    """
    # MQTT devices are simulated by simulator.mqtt; this building serves Modbus ones.
    modbus_profiles = {name: p for name, p in site.profiles.items() if isinstance(p, Profile)}
    devices = [d for d in site.devices if d.enabled and d.modbus is not None]
    unknown = sorted({d.profile for d in devices} - set(modbus_profiles))
    if unknown:
        raise ValueError(f"no profile loaded for {', '.join(unknown)}")
    out: list[DeviceSim] = []
    main_meter: OfficeMeter | None = None
    pending_pv: list[PvInverter] = []
    hvac_meters: list[int] = []  # indexes in `out`
    ac_units: list[AcUnit] = []
    ac_floors: list[str] = []  # each unit's floor tag
    ac_index = 0
    summer = 5 <= clock.now().month <= 10
    for dev in devices:
        profile = modbus_profiles[dev.profile]
        kind = dev.kind or profile.kind
        s = _seed(seed, dev.id)
        use = dev.tags.get("use", "")
        model: DeviceModel
        if kind == "meter":
            meter = OfficeMeter(
                profile,
                clock,
                peak_w=METER_PEAK_W.get(use, 30_000.0),
                shape=METER_SHAPE.get(use, "office"),
                seed=s,
            )
            if use == "total" and main_meter is None:
                main_meter = meter
            if use == "hvac":
                hvac_meters.append(len(out))
            model = meter
        elif kind == "pv_inverter":
            pv = PvInverter(
                profile,
                clock,
                rated_w=PV_RATED_W.get(profile.name, PV_DEFAULT_RATED_W),
                seed=s,
                unit=dev.modbus.unit if dev.modbus else 1,
            )
            pending_pv.append(pv)
            model = pv
        elif kind == "hvac":
            if _is_server_room(dev):
                unit = AcUnit(
                    profile,
                    clock,
                    on=True,
                    mode=MODE_COOL,
                    setpoint=22.0,
                    heat_gain_c=10.0,
                    room_temperature=23.0,
                    seed=s,
                )
            else:
                # Office units: every other one on, the first set "too cold" in summer (24 °C,
                # below the 26 °C minimum for public buildings) or "too warm" in winter.
                on = ac_index % 2 == 0
                if summer:
                    setpoint, mode = (24.0 if ac_index == 0 else 26.0), MODE_COOL
                else:
                    setpoint, mode = (22.0 if ac_index == 0 else 20.0), MODE_HEAT
                unit = AcUnit(profile, clock, on=on, mode=mode, setpoint=setpoint, seed=s)
                ac_index += 1
            ac_units.append(unit)
            ac_floors.append(dev.tags.get("floor", ""))
            model = unit
        elif kind == "water_meter":
            model = WaterMeter(profile, clock, seed=s)
        elif kind == "ev_charger":
            model = EvCharger(profile, clock, seed=s)
        else:
            log.warning("%s: no model for kind %r, serving zeros", dev.id, kind)
            model = StaticModel(profile, clock, seed=s)
        out.append(DeviceSim(dev, profile, model))
    if ac_units:
        # Built last: a site file may list an A/C meter before the units.
        # A floor's A/C meter sees that floor's units; one on a floor without units (the
        # switch room's A/C feeder) sees them all.
        for i in hvac_meters:
            sim = out[i]
            floor = sim.config.tags.get("floor", "")
            own = [u for u, f in zip(ac_units, ac_floors, strict=True) if floor and f == floor]
            sim.model = HvacMeter(
                sim.profile, clock, own or ac_units, base_w=HVAC_BASE_W, seed=sim.model.seed
            )
    for pv in pending_pv:
        if "meter_status" in pv.names:
            pv.site_load = main_meter
    return out


@dataclass
class MeterSim:
    """A DL/T 645 meter of a site with its profile and the model of its values."""

    config: SiteDevice
    profile: Dlt645Profile
    model: OfficeMeter


def meters_for_site(site: BuildingSite, clock: SimClock, *, seed: int = 0) -> list[MeterSim]:
    """An OfficeMeter for every enabled DL/T 645 device of a site, sized and shaped by its
    ``use`` tag as the Modbus meters are (the profile's point names are theirs)."""
    profiles = {n: p for n, p in site.profiles.items() if isinstance(p, Dlt645Profile)}
    devices = [d for d in site.devices if d.enabled and d.dlt645 is not None]
    unknown = sorted({d.profile for d in devices} - set(profiles))
    if unknown:
        raise ValueError(f"no DL/T 645 profile loaded for {', '.join(unknown)}")
    out: list[MeterSim] = []
    for dev in devices:
        profile = profiles[dev.profile]
        use = dev.tags.get("use", "")
        model = OfficeMeter(
            profile,
            clock,
            peak_w=METER_PEAK_W.get(use, 30_000.0),
            shape=METER_SHAPE.get(use, "office"),
            seed=_seed(seed, dev.id),
        )
        out.append(MeterSim(dev, profile, model))
    return out


@dataclass
class MeterLineServer:
    """DL/T 645 meters sharing one line, behind one simulated serial server."""

    host: str
    port: int
    meters: dict[str, SimulatedMeter]  # by device id


@dataclass
class Building:
    """A running virtual building: its servers and, by device id, its devices and models
    (``meters``: the DL/T 645 ones, on ``meter_lines``)."""

    clock: SimClock
    servers: list[RunningServer] = field(default_factory=list)
    devices: dict[str, SimulatedDevice] = field(default_factory=dict)
    models: dict[str, DeviceModel] = field(default_factory=dict)
    meters: dict[str, SimulatedMeter] = field(default_factory=dict)
    meter_lines: list[MeterLineServer] = field(default_factory=list)
    streams: StreamBuilding | None = None  # cameras and door stations on event streams
    _lines: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    def model(self, device_id: str) -> DeviceModel:
        return self.models[device_id]

    def device(self, device_id: str) -> SimulatedDevice:
        return self.devices[device_id]

    def meter(self, device_id: str) -> SimulatedMeter:
        return self.meters[device_id]

    async def stop(self) -> None:
        servers, self.servers = self.servers, []
        lines, self._lines = self._lines, contextlib.AsyncExitStack()
        self.meter_lines = []
        streams, self.streams = self.streams, None
        await asyncio.gather(
            *(s.stop() for s in servers),
            lines.aclose(),
            *([streams.stop()] if streams is not None else []),
            return_exceptions=True,
        )

    async def __aenter__(self) -> Building:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def start_building(
    site: BuildingSite,
    clock: SimClock,
    *,
    seed: int = 0,
    device_time: Callable[[float], float] | None = None,
) -> Building:
    """Serve every enabled Modbus TCP / RTU-over-TCP device, every DL/T 645 meter behind a
    serial server (``tcp``) and every camera, recorder and door station's event stream of a
    site on its loopback port; devices set to push post to the gateway's listener instead.
    ``device_time``: what the stream devices' own clocks say at a simulated instant (the
    demo's: the wall clock).

    One server per distinct (host, port); DL/T 645 meters sharing a port share its line. Hosts
    must be loopback: the simulator never answers for a real device's address. Serial
    (``rtu``) devices are skipped with a warning.
    """
    sims = models_for_site(site, clock, seed=seed)
    groups: dict[tuple[str, int], list[DeviceSim]] = {}
    framers: dict[tuple[str, int], Framer] = {}
    for sim in sims:
        conn = sim.config.modbus
        assert conn is not None  # models_for_site keeps Modbus devices only
        if conn.transport == "rtu":
            log.warning("%s is on serial port %s; not simulated", sim.config.id, conn.port)
            continue
        assert isinstance(conn.port, int)  # a TCP port for tcp and rtu_over_tcp
        if not is_loopback(conn.host):
            raise ValueError(
                f"device {sim.config.id}: host {conn.host} is not a loopback address; the "
                "virtual building only serves on 127.0.0.1 (use a site file for the simulator "
                "such as config/demo-site.yaml)"
            )
        key = (conn.host, conn.port)
        framer: Framer = "rtu" if conn.transport == "rtu_over_tcp" else "tcp"
        if framers.setdefault(key, framer) != framer:
            raise ValueError(
                f"device {sim.config.id}: {conn.host}:{conn.port} mixes tcp and rtu_over_tcp "
                "devices; one port speaks one framing"
            )
        groups.setdefault(key, []).append(sim)
    meter_groups = _meter_lines(meters_for_site(site, clock, seed=seed))
    building = Building(clock)
    try:
        for (host, port), members in groups.items():
            devices = []
            for sim in members:
                member = sim.config.modbus
                assert member is not None  # models_for_site keeps Modbus devices only
                dev = SimulatedDevice(
                    apply_overrides(sim.profile, member.function_overrides),
                    sim.model,
                    unit=member.unit,
                    base=member.base,
                    name=sim.config.id,
                )
                devices.append(dev)
                building.devices[sim.config.id] = dev
                building.models[sim.config.id] = sim.model
            building.servers.append(await serve(devices, host, port, framers[(host, port)]))
        for (host, port), meter_sims in meter_groups.items():
            line: dict[str, SimulatedMeter] = {}
            for msim in meter_sims:
                line_conn = msim.config.dlt645
                assert line_conn is not None  # meters_for_site keeps DL/T 645 devices only
                assert line_conn.address is not None  # _meter_lines checked
                meter = SimulatedMeter(line_conn.address, msim.profile, source=msim.model.values)
                meter.refresh()
                line[msim.config.id] = meter
                building.meters[msim.config.id] = meter
                building.models[msim.config.id] = msim.model
            bound = await building._lines.enter_async_context(
                serve_tcp(list(line.values()), host, port)
            )
            building.meter_lines.append(MeterLineServer(host, bound, line))
        streams = StreamBuilding(site, clock, seed=seed, device_time=device_time)
        for host, _port in streams.endpoints:
            if not is_loopback(host):
                raise ValueError(
                    f"an event stream at {host} is not on a loopback address; the virtual "
                    "building only serves on 127.0.0.1"
                )
        for host, _port in streams.push_targets:
            if not is_loopback(host):
                raise ValueError(
                    f"a device posts its events to a listener at {host}, not a loopback "
                    "address; the virtual building only posts to 127.0.0.1"
                )
        building.streams = streams
        await streams.start()
    except BaseException:
        await building.stop()
        raise
    return building


def _meter_lines(sims: list[MeterSim]) -> dict[tuple[str, int], list[MeterSim]]:
    """The DL/T 645 meters by the serial server (host, port) whose line they are on."""
    lines: dict[tuple[str, int], list[MeterSim]] = {}
    for sim in sims:
        conn = sim.config.dlt645
        assert conn is not None  # meters_for_site keeps DL/T 645 devices only
        if conn.transport == "rtu":
            log.warning("%s is on serial port %s; not simulated", sim.config.id, conn.port)
            continue
        assert isinstance(conn.port, int)  # a TCP port for tcp
        if not is_loopback(conn.host):
            raise ValueError(
                f"device {sim.config.id}: host {conn.host} is not a loopback address; the "
                "virtual building only serves on 127.0.0.1 (use a site file for the simulator "
                "such as config/demo-site.yaml)"
            )
        if conn.address is None:
            raise ValueError(
                f"device {sim.config.id}: the virtual building needs the meter's address; "
                "`discover: true` finds a real meter's"
            )
        lines.setdefault((conn.host, conn.port), []).append(sim)
    return lines


async def _run(site: BuildingSite, speed: float, start: datetime | None, seed: int) -> None:
    clock = SimClock(speed=speed, start=start, tz=site.timezone)
    building = await start_building(site, clock, seed=seed)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    for server in building.servers:
        names = ", ".join(f"{d.name} (unit {d.unit})" for d in server.devices)
        print(f"{server.host}:{server.port} [{server.framer}]: {names}", flush=True)
    for line in building.meter_lines:
        names = ", ".join(f"{i} ({m.address})" for i, m in line.meters.items())
        print(f"{line.host}:{line.port} [dlt645]: {names}", flush=True)
    if building.streams is not None:
        for (host, port), vendor in building.streams.vendors.items():
            names = ", ".join(d for d, k in building.streams.server_of.items() if k == (host, port))
            print(f"{host}:{port} [{vendor} events]: {names}", flush=True)
        for device_id, pusher in building.streams.pushers.items():
            print(f"{device_id} [hikvision push] -> {pusher.url}", flush=True)
    print(f"simulated time {clock.now():%Y-%m-%d %H:%M %Z}, x{speed:g}; Ctrl-C stops", flush=True)
    try:
        await stop.wait()
    finally:
        await building.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a site's devices as a virtual building.")
    parser.add_argument("site", type=Path, help="site file, e.g. config/demo-site.yaml")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    parser.add_argument(
        "--start", type=datetime.fromisoformat, help="simulated start, e.g. 2025-07-15T07:00"
    )
    parser.add_argument("--seed", type=int, default=0, help="varies every device's noise")
    args = parser.parse_args(argv)
    try:
        site = read_site(args.site)
    except ValueError as exc:
        parser.exit(1, f"{exc}\n")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # pymodbus logs every listen and connection at INFO; only its warnings matter here.
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    asyncio.run(_run(site, args.speed, args.start, args.seed))


if __name__ == "__main__":
    main()
