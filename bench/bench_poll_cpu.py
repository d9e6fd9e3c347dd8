"""Result `poll_cpu_vs_bare`: the whole gateway process's CPU, polling 200 TCP meters every
100 ms into a local InfluxDB stand-in, against a bare asyncio client polling the same meters.

The gateway: bench/gateway_proc.py, a process of its own running gateway.service.Gateway on a
site file loaded by load_site as `guanjia run` does (bench/gateway_site.py's dense site: 200
meters every 100 ms, 2,000 threshold rules, two meters flipping so about 24 alarms a minute are
raised or cleared and committed to the SQLite store; the InfluxDB sink writing through the v2
write API to bench.common.FakeInflux; its health published every HEALTH_INTERVAL seconds, more
often than the 30 s default, so that a window holds some). Everything it does is counted: poll,
decode, bus, rules, sink, the InfluxDB writer thread, the alarm store thread, health, logging.

The reference: bench/bare_poller.py, a process of its own with one bench.common.BareClient per
meter (pack a FC3 read of the same 10 registers, unpack them), each on the same fixed-rate
100 ms schedule; nothing else.

Both answer with their own CPU (getrusage of the whole process, all threads) and poll count,
each polling the same fake meters (separate processes, so that neither the farm nor the
stand-in counts). They run side by side and are read over the same WINDOW-second windows, after
WARMUP seconds: on this shared two-core VM the cost of the same work drifts over time (the bare
client, nearly all system calls, measured from 34 to 84 us per poll in windows taken one after
the other), and side by side the drift falls on both alike. SESSIONS sessions, each starting the
two processes in the other order. value = the gateway's CPU per poll / the reference's, over all
windows (target <= 1.5); the median of the windows' ratios beside it. Both are checked to keep
the 2,000 polls a second.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

from bench.common import FakeInflux, ModbusFarm, Result, median, result, us
from bench.gateway_site import (
    DEVICES,
    INTERVAL,
    RULES_PER_DEVICE,
    bare_process,
    gateway_process,
    loadavg,
    write_site,
)

WARMUP = 3.0
WINDOW = 4.0
WINDOWS = 5
SESSIONS = 2
FLIP = 2
FLIP_PERIOD = 10.0
HEALTH_INTERVAL = 1.0

Window = dict[str, dict[str, float]]  # "gateway" / "bare" -> counters over one window


def session(
    directory: Path, farm: ModbusFarm, influx: FakeInflux, order: list[str]
) -> list[Window]:
    """The gateway and the reference side by side: their counters over WINDOWS windows."""
    site = write_site(directory, farm.healthy, influx.url, rules=RULES_PER_DEVICE)
    log = str(directory / "gateway.log")
    with contextlib.ExitStack() as stack:
        processes = {}
        for name in order:
            process = (
                gateway_process(site, health_interval=HEALTH_INTERVAL, log=log)
                if name == "gateway"
                else bare_process(farm.healthy)
            )
            processes[name] = stack.enter_context(process)
        time.sleep(WARMUP)
        last = {name: p.counters() for name, p in processes.items()}
        windows: list[Window] = []
        for _ in range(WINDOWS):
            time.sleep(WINDOW)
            now = {name: p.counters() for name, p in processes.items()}
            windows.append({n: {k: now[n][k] - last[n][k] for k in now[n]} for n in now})
            last = now
    return windows


def run() -> dict[str, Result]:
    print(f"   load average before: {loadavg()}")
    windows: list[Window] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-poll-cpu-") as tmp,
        ModbusFarm(DEVICES, flip=FLIP, flip_period=FLIP_PERIOD) as farm,
        FakeInflux() as influx,
    ):
        for i in range(SESSIONS):
            order = ["gateway", "bare"] if i % 2 == 0 else ["bare", "gateway"]
            windows += session(Path(tmp) / f"session-{i}", farm, influx, order)
        received = influx.stats()
    expected = DEVICES / INTERVAL
    print(
        f"   {DEVICES} meters every {INTERVAL * 1000:.0f} ms (expected {expected:,.0f} polls/s); "
        f"gateway with {DEVICES * RULES_PER_DEVICE:,} rules, health every {HEALTH_INTERVAL:g} s"
    )
    print(
        f"   side by side, each a process of its own; {SESSIONS} sessions of {WINDOWS} windows "
        f"of {WINDOW:g} s after {WARMUP:g} s:"
    )
    ratios = []
    for w in windows:
        g, b = w["gateway"], w["bare"]
        ratio = (g["cpu"] / g["polls"]) / (b["cpu"] / b["polls"])
        ratios.append(ratio)
        print(
            f"     gateway {us(g['cpu'] / g['polls'])}/poll ({g['cpu']:.3f} s / {g['polls']:,.0f} "
            f"polls, {g['failed']:.0f} failed, {g['overruns']:.0f} overruns, "
            f"{g['transitions']:.0f} transitions), bare {us(b['cpu'] / b['polls'])}/poll "
            f"({b['cpu']:.3f} s / {b['polls']:,.0f} polls): {ratio:.3f}"
        )
        for name, c in (("gateway", g), ("bare", b)):
            if c["polls"] < 0.95 * expected * c["wall"]:
                print(f"     WARNING {name}: {c['polls'] / c['wall']:,.0f} polls/s")
    total = {
        name: sum(w[name]["cpu"] for w in windows) / sum(w[name]["polls"] for w in windows)
        for name in ("gateway", "bare")
    }
    cores = {
        name: sum(w[name]["cpu"] for w in windows) / sum(w[name]["wall"] for w in windows)
        for name in ("gateway", "bare")
    }
    ratio = total["gateway"] / total["bare"]
    print(
        f"   InfluxDB stand-in received {received['lines']:,} lines "
        f"in {received['requests']} writes"
    )
    print(
        f"   poll_cpu_vs_bare = {us(total['gateway'])} / {us(total['bare'])} per poll = "
        f"{ratio:.3f} (target <= 1.5; median of the windows {median(ratios):.3f}); "
        f"{cores['gateway']:.3f} / {cores['bare']:.3f} core"
    )
    print(f"   load average after: {loadavg()}")
    return {"poll_cpu_vs_bare": result(ratio, "<= 1.5")}


if __name__ == "__main__":
    run()
