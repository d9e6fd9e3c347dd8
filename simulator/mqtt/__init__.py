"""Simulated MQTT devices of the virtual building, publishing in their vendors' real formats.

What publishes, and as which MQTT client (one connection per real-world publisher), by vendor:

* `hikvision`: access controllers (``door``) and cameras (``hik_camera``), whose ISAPI
  alertStream one bridge client republishes on ``hikvision/{device}/event``;
* `zigbee2mqtt`: door/window contacts, temperature/humidity and occupancy sensors, one client
  for the bridge;
* `tasmota`: energy-monitoring plugs, each its own client with its own last will;
* `frigate`: the cameras of a Frigate NVR, one client for all of them;
* `shelly`: the channels of Shelly Gen2 power-metering relays (Pro 4PM), one client per Shelly
  with its own last will;
* `dahua`: Dahua camera channels behind the dahua2mqtt bridge, one client for the bridge.

Behaviour runs on simulated time (SimClock): people arrive, swipe cards and walk past cameras
during office hours (`shapes`), windows are left open now and then, and rarer faults (a forced
door at night, a camera losing video) happen at configurable rates (`device.EventRates`).
`building.MqttBuilding` runs them all against one broker through their clients (`link`).

Payload shapes: shared/facts/devices/{zigbee2mqtt,tasmota,frigate,hikvision_isapi}.yaml; for
Shelly and the Dahua bridge, the sources of config/profiles/{shelly_pro_4pm,dahua_mqtt_camera}.yaml.
"""

from simulator.mqtt.building import PROFILE_KINDS, MqttBuilding, ac_units_by_zone, from_site
from simulator.mqtt.device import (
    DEVICE_KINDS,
    DeviceDescription,
    DeviceKind,
    EventRates,
    Injection,
    Message,
)

__all__ = [
    "DEVICE_KINDS",
    "PROFILE_KINDS",
    "DeviceDescription",
    "DeviceKind",
    "EventRates",
    "Injection",
    "Message",
    "MqttBuilding",
    "ac_units_by_zone",
    "from_site",
]
