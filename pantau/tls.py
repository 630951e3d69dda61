"""The one TLS client context for every MQTT connection (collector, simulators, API)."""

from __future__ import annotations

import re
import ssl
from pathlib import Path

from pantau.settings import Settings, mqtt_endpoint

__all__ = ["TlsConfigError", "client_tls_context", "describe_tls_error", "is_verify_failure"]


class TlsConfigError(ValueError):
    """The TLS settings cannot be used (missing file, key without certificate, ...)."""


class _ClosingSSLSocket(ssl.SSLSocket):
    """An SSLSocket that closes itself when its handshake fails."""

    def do_handshake(self, block: bool = False) -> None:
        """Handshake; on failure close the socket before raising."""
        try:
            super().do_handshake(block)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise  # a non-blocking handshake in progress, not a failure
        except OSError:
            # paho (and so aiomqtt) drops the socket of a failed handshake without closing it:
            # every retry against a wrong CA would hold a descriptor until garbage collection.
            self.close()
            raise


def _readable(name: str, path: Path) -> str:
    if not path.is_file():
        raise TlsConfigError(f"{name} {path} does not exist or is not a file")
    return str(path)


def client_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """An SSLContext for `mqtts://` URLs (server and hostname verified), else None."""
    files = {
        "PANTAU_MQTT_CA_FILE": settings.mqtt.ca_file,
        "PANTAU_MQTT_CERT_FILE": settings.mqtt.cert_file,
        "PANTAU_MQTT_KEY_FILE": settings.mqtt.key_file,
    }
    if not mqtt_endpoint(settings.mqtt.url).tls:
        given = [name for name, path in files.items() if path is not None]
        if given:
            # Certificates next to a plain mqtt:// URL would be silently unused: the operator
            # believes the link is encrypted when it is not.
            raise TlsConfigError(
                f"{', '.join(given)} given but the MQTT URL is not mqtts:// ({settings.mqtt.url})"
            )
        return None
    ca_file = settings.mqtt.ca_file
    # No CA file: the system trust store (a public CA signed the broker's certificate).
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH,
        cafile=_readable("PANTAU_MQTT_CA_FILE", ca_file) if ca_file else None,
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.sslsocket_class = _ClosingSSLSocket
    # create_default_context already sets both; stated here because they are the point.
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    cert, key = settings.mqtt.cert_file, settings.mqtt.key_file
    if (cert is None) != (key is None):
        raise TlsConfigError("a client certificate needs both PANTAU_MQTT_CERT_FILE and _KEY_FILE")
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(
                _readable("PANTAU_MQTT_CERT_FILE", cert), _readable("PANTAU_MQTT_KEY_FILE", key)
            )
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"cannot load client certificate {cert} / key {key}: {exc}"
            ) from None
    return context


def is_verify_failure(exc: BaseException | str) -> bool:
    """Whether an exception (or its text) is a failed certificate or hostname verification."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return True
    return "CERTIFICATE_VERIFY_FAILED" in str(exc)


def describe_tls_error(exc: BaseException | str, host: str, port: int) -> str:
    """A one-line explanation of a TLS failure that names the likely fix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
    else:
        # Text only (aiomqtt passes the message on): keep the reason, drop OpenSSL's framing.
        detail = re.sub(r" \(_ssl\.c:\d+\)$", "", str(exc)).split("verify failed: ", 1)[-1]
    if is_verify_failure(exc):
        return (
            f"TLS certificate verification failed for MQTT broker {host}:{port}: {detail} "
            "(is PANTAU_MQTT_CA_FILE the CA that signed the broker's certificate, and is the "
            "host name in its subjectAltName?)"
        )
    return f"TLS handshake with MQTT broker {host}:{port} failed: {detail}"
