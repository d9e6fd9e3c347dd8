"""The reference subscriber of bench_mqtt_cpu, in its own process (paho only).

`python bench/bench_mqtt_bare.py PORT`: paho-mqtt 2.x as its documentation shows it, on its
own network thread (`loop_start`), subscribed to `zigbee2mqtt/+` at QoS 1; on_message does
`json.loads(payload)` and reads the five fields of a report, nothing else: the least any
subscriber that uses the data can do with this library.

It prints `{"ready": true}` once the SUBACK is in; each line `count` on stdin is answered with
`{"received": N}`; at end of stdin it disconnects, prints the final count and exits.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

HOST = "127.0.0.1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--qos", type=int, default=1)
    args = parser.parse_args()

    received = [0]
    last: list[tuple[Any, ...]] = [()]
    loads = json.loads

    def on_message(_client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        doc = loads(message.payload)
        last[0] = (
            doc["temperature"],
            doc["humidity"],
            doc["pressure"],
            doc["battery"],
            doc["linkquality"],
        )
        received[0] += 1

    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-mqtt-bare")
    client.on_message = on_message
    client.on_connect = lambda c, *_args: c.subscribe("zigbee2mqtt/+", args.qos)
    client.on_subscribe = lambda *_args: subscribed.set()
    client.connect(HOST, args.port)
    client.loop_start()
    if not subscribed.wait(10):
        raise SystemExit("bare paho: no SUBACK")
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "count":
            print(json.dumps({"received": received[0]}), flush=True)
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"received": received[0]}), flush=True)


if __name__ == "__main__":
    main()
