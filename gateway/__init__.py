"""The gateway service: configuration, bus, sinks, CLI. The composition root."""
