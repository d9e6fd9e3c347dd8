"""The gateway in a process of its own, for the benches that measure its whole CPU.

    python bench/gateway_proc.py SITE_FILE [--health-interval S] [--log FILE]

It loads the site file with gateway.config_load.load_site and runs gateway.service.Gateway on
it, as `guanjia run` does (the CLI's log format at INFO, into --log instead of stderr; no
signal handlers, no view). Once the gateway has started it prints one JSON line
``{"pid": N}``; then it answers each line on its stdin with one JSON line of counters: its own
CPU (getrusage of the whole process, all threads: user + system seconds), the loop's clock, the
polls and transitions so far. The line ``state-save`` stops the polling and answers with
bench.gateway_site.state_save_cpu instead. It stops (flushing as the gateway does) when its
stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: find bench

from bench.common import modbus_of
from bench.gateway_site import state_save_cpu
from gateway.config_load import load_site
from gateway.service import Gateway

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"  # gateway/cli.py's


def counters(gateway: Gateway) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    pollers = modbus_of(gateway).pollers.values()
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "wall": asyncio.get_running_loop().time(),
        "polls": gateway.bus.published["Sample"],
        "failed": sum(p.stats.failed_polls for p in pollers),
        "overruns": sum(p.stats.overruns for p in pollers),
        "transitions": gateway.alarms.transitions if gateway.alarms is not None else 0,
        "lines": gateway.sink.lines_encoded,
    }


async def serve(site: Path, health_interval: float) -> None:
    loop = asyncio.get_running_loop()
    gateway = Gateway(load_site(site), health_interval=health_interval)
    await gateway.start()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    try:
        while line := await reader.readline():
            if line.strip() == b"state-save":
                answer = {"save_cpu": await state_save_cpu(gateway)}
            else:
                answer = counters(gateway)
            print(json.dumps(answer), flush=True)
    finally:
        await gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path)
    parser.add_argument("--health-interval", type=float, default=30.0)
    parser.add_argument("--log", default=os.devnull)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, filename=args.log)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(serve(args.site, args.health_interval))


if __name__ == "__main__":
    main()
