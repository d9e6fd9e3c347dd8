"""Demand response around the rules: where events come from (MQTT, an authenticated HTTP
webhook, an OpenADR 2.0b VEN), and what an event achieved (the measured load shed)."""
