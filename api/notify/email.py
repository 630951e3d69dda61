"""E-mail delivery over SMTP (STARTTLS, login), run in a worker thread."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Final

from api.notify.outbox import DeliveryError, Notification
from pantau.settings import AlertSettings

__all__ = ["SMTP_TIMEOUT_S", "EmailSender"]

SMTP_TIMEOUT_S: Final = 30.0  # connect and each command


def _code_error(code: int, what: str) -> DeliveryError:
    # SMTP says it itself: 4xx is a temporary failure, 5xx a permanent one.
    return DeliveryError(f"smtp: {what} ({code})", permanent=code >= 500)


class EmailSender:
    """Sends notifications as plain UTF-8 e-mails through the configured SMTP server."""

    def __init__(self, alerts: AlertSettings) -> None:
        self._alerts = alerts

    def _tls_context(self) -> ssl.SSLContext:
        ca = self._alerts.smtp_ca_file
        # create_default_context verifies the certificate chain and the host name.
        return ssl.create_default_context(cafile=None if ca is None else str(ca))

    def message(self, n: Notification) -> EmailMessage:
        """The e-mail of a notification, with its idempotency key in the headers."""
        msg = EmailMessage()
        sender = self._alerts.smtp_from
        domain = sender.rpartition("@")[2] or "localhost"
        msg["From"] = sender
        msg["To"] = n.target.address
        msg["Subject"] = n.subject
        msg["Date"] = formatdate(n.created_at, localtime=False, usegmt=True)
        # The same notification always has the same Message-ID, so receivers can drop repeats.
        msg["Message-ID"] = f"<{n.key.replace(':', '.')}@{domain}>"
        msg["X-Pantau-Episode"] = n.episode_id
        msg["X-Pantau-Event"] = n.event
        msg["Idempotency-Key"] = n.key
        msg.set_content(n.text, charset="utf-8")
        return msg

    async def send(self, n: Notification) -> None:
        """Deliver one notification; raise DeliveryError (permanent or not) when it fails."""
        if n.target.channel != "email":
            raise DeliveryError(f"not an e-mail target: {n.target.channel}", permanent=True)
        try:
            msg = self.message(n)
        except ValueError as exc:  # e.g. a line break in a header: it will never be valid
            raise DeliveryError(f"smtp: bad message: {exc}", permanent=True) from None
        await asyncio.to_thread(self._send, msg)

    def _send(self, msg: EmailMessage) -> None:
        alerts = self._alerts
        if alerts.smtp_host is None:
            raise DeliveryError("smtp: no server configured (smtp_host)", permanent=True)
        try:
            with smtplib.SMTP(alerts.smtp_host, alerts.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
                if alerts.smtp_starttls:
                    smtp.starttls(context=self._tls_context())
                if alerts.smtp_username is not None:
                    password = alerts.smtp_password
                    smtp.login(
                        alerts.smtp_username,
                        "" if password is None else password.get_secret_value(),
                    )
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            code = min(code for code, _ in exc.recipients.values())
            raise _code_error(code, "recipient refused") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryError(
                f"smtp: not supported by the server: {exc}", permanent=True
            ) from None
        except smtplib.SMTPResponseException as exc:
            raise _code_error(exc.smtp_code, type(exc).__name__) from None
        except ssl.SSLCertVerificationError as exc:
            # The wrong CA or host name will not fix itself on a retry.
            raise DeliveryError(
                f"smtp: certificate: {exc.verify_message}", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"smtp: {type(exc).__name__}: {exc}", permanent=False) from None
