"""The virtual building's HTTP event streams: cameras, recorders, access controllers and door
stations that the gateway reads without a bridge (drivers/http_events)."""
