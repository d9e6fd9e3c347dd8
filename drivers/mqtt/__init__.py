"""MQTT ingest (Zigbee2MQTT, Tasmota, Frigate, vendor bridges) driven by YAML profiles."""
