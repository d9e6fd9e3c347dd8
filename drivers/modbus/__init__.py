"""Modbus TCP, RTU and RTU-over-TCP polling driven by YAML device profiles."""
