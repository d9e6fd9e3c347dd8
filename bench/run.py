"""Run the benchmarks and record their figures: `python -m bench.run [name ...]`.

With no names every benchmark runs, in the order of BENCHMARKS; names pick a subset (by
benchmark or by a result it produces: `cpu_pymodbus` runs `cpu`). Results are merged into
bench/results.json, so running a subset keeps the other benchmarks' last figures.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from bench.common import BENCH_DIR, Result

RESULTS = BENCH_DIR / "results.json"

# (name, module, results it produces). A new benchmark is one more line; its module exposes
# `run() -> dict[str, Result]` and prints its own figures.
BENCHMARKS: list[tuple[str, str, tuple[str, ...]]] = [
    ("cycle", "bench.bench_cycle", ("cycle_vs_bare", "cycle")),
    ("dead", "bench.bench_dead", ("dead", "dead_tcp", "dead_line")),
    ("cpu", "bench.bench_cpu", ("cpu", "cpu_pymodbus")),
    ("planner", "bench.bench_planner", ("planner",)),  # + planner_<case>_<baud>, information
    ("write", "bench.bench_write", ("write",)),
    ("ingest", "bench.bench_ingest", ("ingest_vs_paho",)),
    ("mqtt_cpu", "bench.bench_mqtt_cpu", ("mqtt_cpu_vs_paho",)),
    ("rules", "bench.bench_rules", ("rules_cpu", "rules_cpu_dense", "rules_p99_ms")),
    ("loop_lag", "bench.bench_loop_lag", ("loop_lag_p99_ms",)),
    ("poll_cpu", "bench.bench_poll_cpu", ("poll_cpu_vs_bare",)),
    ("console", "bench.bench_console", ("console_p99_ms",)),
    ("notify", "bench.bench_notify", ("notify",)),
    (
        "streams",
        "bench.bench_streams",
        ("streams_cpu_vs_bare", "streams_rss_mib", "streams_reconnect_s"),
    ),
    ("accounts", "bench.bench_accounts", ("accounts_cpu",)),
    ("report", "bench.bench_report", ("report_s",)),
    ("fleet", "bench.bench_fleet", ("fleet_rss_mib", "fleet_cpu")),
    (
        "dr_apply",
        "bench.bench_dr_apply",
        ("dr_apply_s", "dr_apply_seconds", "dr_apply_min_s", "dr_apply_own_cap_seconds"),
    ),
]


def select(names: Sequence[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    if not names:
        return list(BENCHMARKS)
    chosen = [b for b in BENCHMARKS if b[0] in names or set(b[2]) & set(names)]
    known = {b[0] for b in BENCHMARKS} | {r for b in BENCHMARKS for r in b[2]}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(
            f"unknown benchmark {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return chosen


def load(path: Path) -> dict[str, Result]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return cast(dict[str, Result], data) if isinstance(data, dict) else {}


def save(path: Path, results: dict[str, Result]) -> None:
    # Write then rename: an interrupted run never leaves a half-written file behind.
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


def main(argv: Sequence[str]) -> int:
    chosen = select(argv)
    results = load(RESULTS)
    failed: list[str] = []
    started = time.monotonic()
    for name, module_name, _produces in chosen:
        print(f"== {name}", flush=True)
        t0 = time.monotonic()
        try:
            module = importlib.import_module(module_name)
            run = cast(Callable[[], dict[str, Result]], module.run)
            produced = run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        results.update(produced)
        save(RESULTS, results)  # after each one, so a later crash keeps the earlier figures
        print(f"   ({time.monotonic() - t0:.1f} s)\n", flush=True)
    print(f"== summary ({time.monotonic() - started:.1f} s), written to {RESULTS}")
    for name, _module, produces in chosen:
        for key in produces:
            if key in results and name not in failed:
                r = results[key]
                print(f"  {key:14s} {r['value']:>9.3f} {r['unit']:5s}  target {r['target']}")
    if failed:
        print(f"  failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
