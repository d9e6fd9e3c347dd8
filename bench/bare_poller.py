"""The reference of `poll_cpu_vs_bare`: bare asyncio clients polling devices, in their own process.

    python bench/bare_poller.py --interval 0.1 PORT [PORT ...]

One bench.common.BareClient per port (pack a FC3 read of 10 registers, unpack the registers),
each in its own task on a fixed-rate schedule like the gateway's pollers: start at a random
point of the first interval, then every `interval`, the next poll as soon as possible when one
runs late. Nothing else: no decoding, no bus, no storage. Once every client is connected it
prints ``{"pid": N}``, answers each line on its stdin with one JSON line of counters (its own
CPU from getrusage, all threads; the loop's clock; the polls so far) and stops when its stdin
closes. The same protocol as bench/gateway_proc.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script: find bench

from bench.common import BareClient, connect_bare


class Counter:
    polls = 0


async def poll(client: BareClient, interval: float, counter: Counter) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, interval))
    next_at = loop.time()
    while True:
        await client.read_holding(0, 10)
        counter.polls += 1
        next_at += interval
        now = loop.time()
        if next_at < now:
            next_at = now
        await asyncio.sleep(next_at - now)


async def serve(ports: list[int], interval: float) -> None:
    loop = asyncio.get_running_loop()
    clients = [await connect_bare(port) for port in ports]
    counter = Counter()
    tasks = [asyncio.create_task(poll(c, interval, counter)) for c in clients]
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"pid": os.getpid()}), flush=True)
    try:
        while await reader.readline():
            usage = resource.getrusage(resource.RUSAGE_SELF)
            answer = {
                "cpu": usage.ru_utime + usage.ru_stime,
                "wall": loop.time(),
                "polls": counter.polls,
            }
            print(json.dumps(answer), flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("ports", type=int, nargs="+")
    args = parser.parse_args()
    asyncio.run(serve(args.ports, args.interval))


if __name__ == "__main__":
    main()
