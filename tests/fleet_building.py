"""The virtual buildings of a fleet in one process of their own: every Modbus device of the
given site files served where its site expects it (simulator.building.start_building), off
the test's (or bench's) own process so the gateways' readings are served whatever that does.

    python -m tests.fleet_building SITE.yaml [SITE.yaml ...]

Prints one JSON line `{"pid": N, "devices": [...]}` once every building listens; then answers
each line on its stdin with one JSON line:

- `bad DEVICE POINT VALUE`: the device serves VALUE for POINT from now on (an alarm's cause);
- `clear DEVICE`: the device serves its model's values again.

It stops, its servers closed, when its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from simulator.building import Building, start_building
from simulator.clock import SimClock
from simulator.site import read_site


async def serve(sites: list[Path]) -> None:
    loop = asyncio.get_running_loop()
    buildings: list[Building] = []
    try:
        for site in sites:
            data = read_site(site)
            buildings.append(await start_building(data, SimClock(tz=data.timezone)))
        devices = {name: dev for b in buildings for name, dev in b.devices.items()}
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        print(json.dumps({"pid": os.getpid(), "devices": sorted(devices)}), flush=True)
        while line := await reader.readline():
            words = line.decode().split()
            try:
                if words[0] == "bad":
                    devices[words[1]].set_bad_value(words[2], float(words[3]))
                elif words[0] == "clear":
                    devices[words[1]].clear_faults()
                else:
                    raise ValueError(f"unknown command {words[0]!r}")
                answer: dict[str, object] = {"ok": True}
            except (IndexError, KeyError, ValueError) as exc:
                answer = {"ok": False, "error": repr(exc)}
            print(json.dumps(answer), flush=True)
    finally:
        await asyncio.gather(*(b.stop() for b in buildings), return_exceptions=True)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    asyncio.run(serve([Path(a) for a in sys.argv[1:]]))


if __name__ == "__main__":
    main()
