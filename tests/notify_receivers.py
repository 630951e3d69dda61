"""Real local receivers of notifications for tests: a webhook HTTP server and an SMTP server."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from pantau.dev import free_port


@dataclass(frozen=True)
class Received:
    """One webhook call the receiver accepted."""

    key: str
    body: bytes
    headers: dict[str, str]


class WebhookReceiver:
    """A threaded HTTP server that checks signatures and can be told to fail or go away."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.received: list[Received] = []
        self.requests = 0  # every request, answered however
        self.rejected = 0  # bad signatures
        self._fail_next = 0
        self._fail_every = 0
        self._status = 500
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> WebhookReceiver:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, count: int, status: int = 500) -> None:
        """Answer `status` to the next `count` requests."""
        with self._lock:
            self._fail_next, self._status = count, status

    def fail_every(self, k: int, status: int = 500) -> None:
        """Answer `status` to every k-th request (0: never)."""
        with self._lock:
            self._fail_every, self._status = k, status

    def accepted_keys(self) -> list[str]:
        """The idempotency keys of the accepted calls, in order."""
        with self._lock:
            return [r.key for r in self.received]

    def start(self) -> None:
        """Listen (again) on the receiver's port."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                status = receiver._answer(body, dict(self.headers.items()))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def _answer(self, body: bytes, headers: dict[str, str]) -> int:
        with self._lock:
            self.requests += 1
            if self._fail_next > 0:
                self._fail_next -= 1
                return self._status
            if self._fail_every and self.requests % self._fail_every == 0:
                return self._status
            timestamp = headers.get("X-Pantau-Timestamp", "")
            expected = hmac.new(
                self.secret, f"{timestamp}.".encode() + body, hashlib.sha256
            ).hexdigest()
            if not hmac.compare_digest(headers.get("X-Pantau-Signature", ""), f"sha256={expected}"):
                self.rejected += 1
                return 401
            self.received.append(Received(headers.get("Idempotency-Key", ""), body, headers))
            return 204


class _Recorder:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(  # noqa: N802 (the name aiosmtpd calls)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


class SmtpReceiver:
    """An aiosmtpd server on a free port that requires STARTTLS (and AUTH if a user is given)."""

    def __init__(self, tmp: Path, user: str | None = None, password: str | None = None) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.ca_file = tmp / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self.port = free_port()
        self.user, self.password = user, password
        self._recorder = _Recorder()
        kwargs: dict[str, Any] = {"require_starttls": True, "tls_context": context}
        if user is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True)
        self._controller = Controller(
            self._recorder, hostname="127.0.0.1", port=self.port, **kwargs
        )

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        """The messages received so far."""
        with self._recorder.lock:
            return list(self._recorder.messages)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.user
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)
