"""Private Mosquitto and InfluxDB instances for development and tests (`pantau services`)."""

from ingest.services._process import ServiceError, ensure_installed, free_port
from ingest.services.influxdb import InfluxDBService
from ingest.services.mosquitto import MosquittoService

__all__ = ["InfluxDBService", "MosquittoService", "ServiceError", "ensure_installed", "free_port"]
