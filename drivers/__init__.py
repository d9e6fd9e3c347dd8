"""Device drivers: Modbus pollers, MQTT ingest and the simulated building."""
