"""Operators acknowledging alarms while the gateway runs, as `guanjia ack` does, in a process of
its own (bench_loop_lag starts it).

    python bench/ack_writer.py STORE_FILE --every 0.1

Every `--every` seconds, through a gateway.alarm_store.AlarmStore on the running gateway's
SQLite file (opened as the CLI opens it), it lists the open alarms and asks the gateway to
acknowledge one that nobody has acknowledged yet with AlarmStore.ack_request: a write
transaction (BEGIN IMMEDIATE, fsynced) on the file the gateway's store thread writes, so each
one holds the write lock the gateway needs. It prints ``{"pid": N}`` when ready, answers each
line on stdin with its counters, and stops when its stdin closes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

from gateway.alarm_store import AlarmStore


class Acker:
    def __init__(self, store: AlarmStore, every: float) -> None:
        self.store = store
        self.every = every
        self.requests = 0
        self.nothing_to_ack = 0
        self.errors = 0
        self.asked: set[str] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                candidates = [
                    a.id
                    for a in self.store.open_alarms()
                    if a.acked_at is None and a.id not in self.asked
                ]
                if candidates:
                    alarm = candidates[0]
                    self.store.ack_request(alarm, "bench-operator", "seen")
                    self.asked.add(alarm)
                    self.requests += 1
                else:
                    self.asked.clear()  # acknowledged by now, or closed and raised again
                    self.nothing_to_ack += 1
            except Exception:  # a busy timeout would be the gateway's fault: count it
                self.errors += 1
            next_at += self.every
            self.stop.wait(max(0.0, next_at - time.monotonic()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("--every", type=float, default=0.1)
    args = parser.parse_args()
    store = AlarmStore(args.store)
    acker = Acker(store, args.every)
    thread = threading.Thread(target=acker.run, name="acker")
    thread.start()
    print(json.dumps({"pid": os.getpid()}), flush=True)
    try:
        for _line in sys.stdin:
            answer = {
                "requests": acker.requests,
                "nothing_to_ack": acker.nothing_to_ack,
                "errors": acker.errors,
            }
            print(json.dumps(answer), flush=True)
    finally:
        acker.stop.set()
        thread.join()
        store.close()


if __name__ == "__main__":
    main()
