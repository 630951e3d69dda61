"""Baseline for the ingest benchmark: a bare paho-mqtt subscriber that only counts messages."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def main() -> None:
    """Count QoS 1 messages on a persistent session; print the count on SIGTERM."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--count-file", required=True)
    args = parser.parse_args()
    received = 0
    stop = threading.Event()

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1

    def on_connect(client: mqtt.Client, *rest: object) -> None:
        client.subscribe(args.topic, qos=1)

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=args.client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.on_message = on_message
    client.on_connect = on_connect
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 10000
    client.connect("127.0.0.1", args.port, clean_start=False, properties=props)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    with Path(args.count_file).open("w") as out:
        while not stop.wait(0.05):
            out.seek(0)
            out.write(f"{received:>12d}")
            out.flush()
    client.disconnect()
    client.loop_stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
