"""The paced MQTT load, in its own process (paho only): `python bench/bench_mqtt_pub.py PORT`.

Publishes Zigbee2MQTT reports (bench_mqtt_common.payload's shape, ~95 bytes) at `--rate`
messages per second in all, one message per tick of a fixed schedule (never in bursts), the
50 sensors' topics in turn (each sensor at rate / 50), at QoS `--qos`. The schedule is kept
against the clock: a late tick is caught up, so the count published after t seconds is
rate * t, whatever the scheduler does to this process.

It prints `{"ready": true}` once connected; each line `count` on stdin is answered with
`{"published": N}`; at end of stdin it stops, prints the final count and exits.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"
DEVICES = 50


def payloads(count: int, seed: int = 11) -> list[bytes]:
    """Zigbee2MQTT reports of an Aqara WSDCGQ11LM, about 95 bytes each, e.g.
    {"temperature": 21.53, "humidity": 45.2, "pressure": 1012.3, "battery": 97,
    "linkquality": 120}: five of the profile's six points (no voltage), all within range."""
    rng = random.Random(seed)
    return [
        json.dumps(
            {
                "temperature": round(rng.uniform(18.0, 27.0), 2),
                "humidity": round(rng.uniform(30.0, 65.0), 1),
                "pressure": round(rng.uniform(995.0, 1030.0), 1),
                "battery": rng.randint(60, 100),
                "linkquality": rng.randint(40, 200),
            }
        ).encode()
        for _ in range(count)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--qos", type=int, default=1)
    args = parser.parse_args()

    connected = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-mqtt-load")
    client.max_inflight_messages_set(1000)  # the load never waits for the broker's acks
    client.max_queued_messages_set(0)
    client.on_connect = lambda *_args: connected.set()
    client.connect(HOST, args.port)
    client.loop_start()
    if not connected.wait(10):
        raise SystemExit("publisher: no CONNACK")
    topics = [f"zigbee2mqtt/sensor-{i:03d}" for i in range(DEVICES)]
    bodies = payloads(1000)
    stop = threading.Event()
    published = [0]

    def publish() -> None:
        interval = 1.0 / args.rate
        start = time.monotonic()
        n = 0
        while not stop.is_set():
            due = start + n * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            client.publish(topics[n % DEVICES], bodies[n % len(bodies)], qos=args.qos)
            n += 1
            published[0] = n

    worker = threading.Thread(target=publish, daemon=True)
    worker.start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(json.dumps({"published": published[0]}), flush=True)
    stop.set()
    worker.join()
    time.sleep(0.2)  # the last acks
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"published": published[0]}), flush=True)


if __name__ == "__main__":
    main()
