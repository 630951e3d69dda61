"""Private Mosquitto and InfluxDB instances for development and tests (`pantau services`)."""

from pantau.dev.influxdb import InfluxDBService
from pantau.dev.mosquitto import MosquittoService
from pantau.dev.process import ServiceError, ensure_installed, free_port

__all__ = ["InfluxDBService", "MosquittoService", "ServiceError", "ensure_installed", "free_port"]
