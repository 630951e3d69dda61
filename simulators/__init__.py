"""Simulators: device fleets and replay of recorded sensor data, over MQTT like real devices."""
