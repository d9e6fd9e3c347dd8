"""`guanjia scan`: find the devices on a line and suggest the profiles that fit them.

The wire work is the drivers' (drivers/modbus/scan.py, drivers/dlt645/scan.py); here the
shipped profiles are loaded, every found unit is matched against them, and the result is
printed as text with a ready-to-paste `devices:` snippet, or as JSON.

How a Modbus unit is matched, strongest first:
- its Read Device Identification equals a profile's `identity:` block (vendor and product);
- SunSpec common and inverter models (1 with 101/102/103): the SunSpec inverter profile;
- the words of its identification (vendor, product code, product and model names) found in a
  profile's name or description;
- without identification: the share of a few of each profile's registers that read without an
  exception and decode inside their plausible `valid` range.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.dlt645 import scan as dlt645_scan
from drivers.modbus import scan as modbus_scan
from gateway.config_load import BUILTIN_PROFILES, available_profiles, load_profile

SUNSPEC_INVERTER_PROFILE = "sunspec_inverter"
SUNSPEC_INVERTERS = frozenset({101, 102, 103})  # single, split and three phase
SUNSPEC_METERS = frozenset({201, 202, 203, 204})
SUNSPEC_NAMES = {
    1: "common",
    101: "inverter 1-phase",
    102: "inverter split-phase",
    103: "inverter 3-phase",
    160: "MPPT",
    201: "meter 1-phase",
    202: "meter split-phase",
    203: "meter 3-phase wye",
    204: "meter 3-phase delta",
}
GOOD_ENOUGH = 0.5  # a suggestion below this is listed but not put in the snippet


@dataclass(frozen=True, slots=True)
class Suggestion:
    profile: str
    score: float  # 0..1
    why: str


@dataclass(slots=True)
class ScanReport:
    modbus: list[modbus_scan.LineScan] = field(default_factory=list)
    dlt645: list[dlt645_scan.MeterScan] = field(default_factory=list)
    suggestions: dict[tuple[str, int | str], list[Suggestion]] = field(default_factory=dict)


def load_candidates(dirs: Sequence[Path] = ()) -> dict[str, Any]:
    """Every profile in ``dirs`` and the shipped ones (earlier directories win)."""
    found = available_profiles([*dirs, BUILTIN_PROFILES])
    return {name: load_profile(path) for name, path in sorted(found.items())}


def _words(text: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", text.lower()) if len(w) >= 3}


def suggest_modbus(found: modbus_scan.FoundUnit, profiles: Sequence[Any]) -> list[Suggestion]:
    """Candidate profiles for one unit, best first."""
    out: dict[str, Suggestion] = {}

    def offer(name: str, score: float, why: str) -> None:
        if score > 0 and (name not in out or out[name].score < score):
            out[name] = Suggestion(name, round(score, 2), why)

    ident = found.identity
    said = _words(" ".join(ident.get(i, "") for i in (0, 1, 4, 5)))
    for profile in profiles:
        own = profile.identity
        if (
            own is not None
            and ident
            and (ident.get(0, "").lower(), ident.get(1, "").lower())
            == (own.vendor_name.lower(), own.product_code.lower())
        ):
            offer(profile.name, 1.0, "its identification is the profile's identity")
            continue
        if said:
            text = _words(f"{profile.name.replace('_', ' ')} {profile.name} {profile.description}")
            shared = sorted(said & text)
            if shared:
                offer(
                    profile.name,
                    0.9 * len(shared) / len(said),
                    f"identification words in the profile: {', '.join(shared)}",
                )
    sunspec = found.sunspec
    if sunspec is not None:
        ids = set(sunspec.model_ids)
        names = {p.name for p in profiles}
        if ids & SUNSPEC_INVERTERS and SUNSPEC_INVERTER_PROFILE in names:
            chain = sunspec.model_ids == [1, 103, 160] and sunspec.base == 40000
            offer(
                SUNSPEC_INVERTER_PROFILE,
                1.0 if chain else 0.7,
                f"SunSpec models {', '.join(map(str, sunspec.model_ids))} at {sunspec.base}"
                + ("" if chain else " (the profile expects 1, 103, 160 at 40000: check its map)"),
            )
    for probe in found.probes:
        tried = len(probe.tried)
        offer(
            probe.profile,
            0.8 * probe.score,
            f"{len(probe.good)} of {tried} registers read inside their valid ranges"
            + (
                f", {zeros} of them zero"
                if (zeros := sum(v == 0 for v in probe.good.values()))
                else ""
            ),
        )
    return sorted(out.values(), key=lambda s: (-s.score, s.profile))


def suggest_dlt645(meter: dlt645_scan.FoundMeter) -> list[Suggestion]:
    return [
        Suggestion(name, 0.9, "its first identifier reads")
        for name, result in sorted(meter.reads.items())
        if result == "ok"
    ]


async def run_scan(
    modbus_lines: Sequence[str],
    dlt645_lines: Sequence[str],
    units: Sequence[int],
    limits: modbus_scan.Limits,
    profile_dirs: Sequence[Path] = (),
) -> ScanReport:
    """Scan the lines one after the other (a scan is a guest on each of them)."""
    modbus_conns = [modbus_scan.parse_line(u) for u in modbus_lines]
    dlt645_conns = [dlt645_scan.parse_line(u, limits.timeout * 3) for u in dlt645_lines]
    profiles = list(load_candidates(profile_dirs).values())
    modbus_profiles = modbus_scan.candidates(profiles)
    dlt645_profiles = dlt645_scan.candidates(profiles)
    report = ScanReport()
    for conn in modbus_conns:
        line = await modbus_scan.scan_line(conn, units, limits, modbus_profiles)
        report.modbus.append(line)
        for found in line.units:
            report.suggestions[(line.line, found.unit)] = suggest_modbus(found, modbus_profiles)
    for dconn in dlt645_conns:
        meters = await dlt645_scan.scan_line(dconn, dlt645_profiles, limits.timeout * 3)
        report.dlt645.append(meters)
        for meter in meters.meters:
            report.suggestions[(meters.line, meter.address)] = suggest_dlt645(meter)
    return report


# --- output ---------------------------------------------------------------------------------


def _serial(conn: modbus_scan.SerialLine | dlt645_scan.SerialLine) -> str:
    """A local port's settings as scanned: all of them that differ from 8 data bits and one
    stop bit, and always the rate and parity (the drivers' defaults for them differ: Modbus
    8N1, DL/T 645 8E1)."""
    text = f"transport: rtu, port: {conn.port}, baudrate: {conn.baudrate}, parity: {conn.parity}"
    if conn.bytesize != 8:
        text += f", bytesize: {conn.bytesize}"
    if conn.stopbits != 1:
        text += f", stopbits: {conn.stopbits}"
    return text


def _modbus_block(line: modbus_scan.LineScan, unit: int) -> str:
    conn = line.connection
    if isinstance(conn, modbus_scan.SerialLine):
        return f"{{{_serial(conn)}, unit: {unit}}}"
    transport = "tcp" if isinstance(conn, modbus_scan.TcpLine) else "rtu_over_tcp"
    return f"{{transport: {transport}, host: {conn.host}, port: {conn.port}, unit: {unit}}}"


def _dlt645_block(meters: dlt645_scan.MeterScan, address: str) -> str:
    conn = meters.connection
    if isinstance(conn, dlt645_scan.SerialLine):
        where = _serial(conn)
    else:
        where = f"transport: tcp, host: {conn.host}, port: {conn.port}"
    return f'{{{where}, address: "{address}"}}'


def _entry(device_id: str, best: list[Suggestion], key: str, block: str) -> list[str]:
    chosen = best[0] if best and best[0].score >= GOOD_ENOUGH else None
    profile = chosen.profile if chosen else "TODO  # no shipped profile fits: write one"
    return [f"  - id: {device_id}", f"    profile: {profile}", f"    {key}: {block}"]


def snippet(report: ScanReport) -> str:
    """The `devices:` entries of everything found, ready to paste into a site file."""
    lines = ["devices:"]
    many = len(report.modbus) > 1
    for n, line in enumerate(report.modbus):
        for found in line.units:
            best = report.suggestions.get((line.line, found.unit), [])
            prefix = best[0].profile.replace("_", "-") if best else "device"
            device_id = f"{prefix}-{n + 1}-{found.unit}" if many else f"{prefix}-{found.unit}"
            lines += _entry(device_id, best, "modbus", _modbus_block(line, found.unit))
    for meters in report.dlt645:
        for meter in meters.meters:
            best = report.suggestions.get((meters.line, meter.address), [])
            block = _dlt645_block(meters, meter.address)
            lines += _entry(f"meter-{meter.address}", best, "dlt645", block)
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


def text(report: ScanReport) -> str:
    out: list[str] = []
    for line in report.modbus:
        head = f"{line.line}: {len(line.units)} of {len(line.tried)} unit ids answered"
        out.append(f"{head}, {line.requests} requests")
        if line.error:
            out.append(f"  not scanned: {line.error}")
        if line.stopped:
            out.append(f"  stopped: {line.stopped}")
        if line.not_tried:
            out.append(f"  not tried: {_ranges(line.not_tried)}")
        if line.noise:
            out.append(f"  {line.noise} garbled answers (noise, or two devices at one id?)")
        for found in line.units:
            out.append(f"  unit {found.unit}: answers ({found.answer})")
            if found.identity:
                named = ", ".join(f"{k} {v!r}" for k, v in found.identity_named.items())
                out.append(f"    identification: {named}")
            elif found.identity_refused:
                out.append(f"    identification: none ({found.identity_refused})")
            if found.sunspec is not None:
                spec = found.sunspec
                models = ", ".join(
                    f"{m}" + (f" {SUNSPEC_NAMES[m]}" if m in SUNSPEC_NAMES else "")
                    for m in spec.model_ids
                )
                out.append(f"    SunSpec at {spec.base}: models {models}")
                if spec.manufacturer or spec.model:
                    out.append(f"      {spec.manufacturer} {spec.model} {spec.version}".rstrip())
                if set(spec.model_ids) & SUNSPEC_METERS:
                    out.append("      a SunSpec meter: no shipped profile reads models 201-204")
            best = report.suggestions.get((line.line, found.unit), [])
            for s in best[:3]:
                out.append(f"    suggests {s.profile} ({s.score:.2f}): {s.why}")
            if not best:
                out.append("    suggests no shipped profile")
    for meters in report.dlt645:
        head = f"{meters.line} (DL/T 645): {len(meters.meters)} meters answered"
        out.append(f"{head}, {meters.requests} requests")
        if meters.error:
            out.append(f"  not scanned: {meters.error}")
        if meters.garbled:
            out.append(
                f"  {meters.garbled} garbled answers to the broadcast: several meters on the "
                "line answer at once; read each address off its nameplate"
            )
        if len(meters.meters) > 1:
            out.append(
                "  several answers came through whole; on a real RS-485 line they usually "
                "collide: check each address on its nameplate"
            )
        for meter in meters.meters:
            out.append(f"  meter {meter.address}")
            best = report.suggestions.get((meters.line, meter.address), [])
            for s in best[:3]:
                out.append(f"    suggests {s.profile} ({s.score:.2f}): {s.why}")
            for name, result in meter.reads.items():
                if result != "ok":
                    out.append(f"    {name}: {result}")
    body = snippet(report)
    if body:
        out += ["", "# devices found, for the site file (check ids, profiles and tags):", body]
    return "\n".join(out).rstrip("\n") + "\n"


def to_json(report: ScanReport) -> str:
    def suggestions(line: str, key: int | str) -> list[dict[str, Any]]:
        return [
            {"profile": s.profile, "score": s.score, "why": s.why}
            for s in report.suggestions.get((line, key), [])
        ]

    data = {
        "modbus": [
            {
                "line": line.line,
                "tried": line.tried,
                "not_tried": line.not_tried,
                "requests": line.requests,
                "error": line.error,
                "stopped": line.stopped,
                "noise": line.noise,
                "units": [
                    {
                        "unit": f.unit,
                        "answer": f.answer,
                        "identification": f.identity_named,
                        "identification_refused": f.identity_refused,
                        "sunspec": None
                        if f.sunspec is None
                        else {
                            "base": f.sunspec.base,
                            "models": f.sunspec.model_ids,
                            "complete": f.sunspec.complete,
                            "manufacturer": f.sunspec.manufacturer,
                            "model": f.sunspec.model,
                            "version": f.sunspec.version,
                            "serial_number": f.sunspec.serial_number,
                        },
                        "probes": [
                            {"profile": p.profile, "score": p.score, "good": p.good, "bad": p.bad}
                            for p in f.probes
                        ],
                        "suggestions": suggestions(line.line, f.unit),
                    }
                    for f in line.units
                ],
            }
            for line in report.modbus
        ],
        "dlt645": [
            {
                "line": m.line,
                "requests": m.requests,
                "garbled": m.garbled,
                "error": m.error,
                "meters": [
                    {
                        "address": meter.address,
                        "reads": meter.reads,
                        "suggestions": suggestions(m.line, meter.address),
                    }
                    for meter in m.meters
                ],
            }
            for m in report.dlt645
        ],
        "devices": snippet(report),
    }
    return json.dumps(data, ensure_ascii=False, indent=2, default=str)


def _ranges(units: Sequence[int]) -> str:
    parts: list[str] = []
    start = prev = units[0]
    for u in [*units[1:], -1]:
        if u != prev + 1:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = u
        prev = u
    return ",".join(parts)


# --- the command ----------------------------------------------------------------------------


def add_scan_command(sub: Any) -> None:
    """`guanjia scan`, on the CLI's subparsers."""
    p = sub.add_parser(
        "scan",
        help="find the Modbus and DL/T 645 devices on a line and suggest their profiles",
        description="Sweeps unit ids (one request at a time on serial lines, no retries), "
        "reads Modbus identification and SunSpec models, tries DL/T 645 address discovery, "
        "and prints a devices: snippet for the site file.",
    )
    p.add_argument(
        "--modbus",
        action="append",
        default=[],
        metavar="LINE",
        help="tcp://HOST:PORT, rtu-over-tcp://HOST:PORT or "
        "rtu:/dev/ttyUSB0?baudrate=9600&parity=N (repeatable)",
    )
    p.add_argument(
        "--dlt645",
        action="append",
        default=[],
        metavar="LINE",
        help="tcp://HOST:PORT (serial server) or /dev/ttyUSB1?baudrate=2400&parity=E",
    )
    p.add_argument("--units", default="1-247", help="unit ids to sweep: 1-247, 1,2,5-8")
    p.add_argument("--timeout", type=float, default=0.3, help="seconds per request (no retry)")
    p.add_argument(
        "--pause", type=float, default=0.05, help="seconds after each request on serial lines"
    )
    p.add_argument(
        "--concurrency", type=int, default=4, help="requests in flight on Modbus TCP only"
    )
    p.add_argument("--max-time", type=float, default=120.0, help="seconds a line may take, at most")
    p.add_argument(
        "--profiles", action="append", default=[], metavar="DIR", help="more profile folders"
    )
    p.add_argument("--format", choices=["text", "json"], default="text", help="output")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args: Any) -> int:
    """Exit status: 0 something found, 1 nothing found or a line not scanned, 2 bad flags."""
    import asyncio

    if not args.modbus and not args.dlt645:
        print("guanjia scan: give a line: --modbus tcp://HOST:PORT or --dlt645 ...")
        return 2
    try:
        units = modbus_scan.parse_units(args.units)
        for url in args.modbus:
            modbus_scan.parse_line(url)
        for url in args.dlt645:
            dlt645_scan.parse_line(url, args.timeout)
        if not 0 < args.timeout <= 10 or args.pause < 0 or args.max_time <= 0:
            raise modbus_scan.ScanError(
                "--timeout is 0..10 s, --pause 0 or more, --max-time more than 0"
            )
        if not 1 <= args.concurrency <= 16:
            raise modbus_scan.ScanError("--concurrency is 1..16 (devices take few connections)")
    except (modbus_scan.ScanError, dlt645_scan.ScanError) as exc:
        print(f"guanjia scan: {exc}")
        return 2
    limits = modbus_scan.Limits(
        timeout=args.timeout,
        pause=args.pause,
        concurrency=args.concurrency,
        max_time=args.max_time,
    )
    report = asyncio.run(
        run_scan(args.modbus, args.dlt645, units, limits, [Path(d) for d in args.profiles])
    )
    print(to_json(report) if args.format == "json" else text(report), end="")
    failed = any(line.error for line in report.modbus) or any(m.error for m in report.dlt645)
    found = any(line.units for line in report.modbus) or any(m.meters for m in report.dlt645)
    return 0 if found and not failed else 1
