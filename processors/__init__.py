"""Pure numpy processing: the sensor catalog, per-device state, detectors and indicators. No I/O."""
