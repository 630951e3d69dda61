"""MQTT collectors: subscribe, decode, validate, batch, persist to InfluxDB, acknowledge."""
