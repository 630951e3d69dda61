"""Pantau's shared core: settings, registry, topics, the derived-message contract, InfluxDB."""
