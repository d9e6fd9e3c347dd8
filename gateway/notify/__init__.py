"""Notifications: alarms reach the people on duty (roster, routing, channels, outbox)."""
