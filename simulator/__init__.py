"""The virtual building: simulated devices for the demo and the tests, a product of its own.

It serves devices from the same profiles the gateway reads and imports nothing of the gateway
(the gateway's demo imports it). `site` reads a site file's devices, `clock` runs simulated
local time (optionally fast-forwarded), `models` turn that time into engineering values by
profile point name (meters, PV, HVAC), `server` serves the models through pymodbus exactly
where a profile says the real device keeps them, and `building` starts a whole site's Modbus
devices. `mqtt` publishes the MQTT devices in their vendors' formats (Hikvision, Zigbee2MQTT,
Tasmota, Frigate), `broker` is the embedded broker, `scenario` the demo's script.

    .venv/bin/python -m simulator.building config/demo-site.yaml --speed 60
"""
