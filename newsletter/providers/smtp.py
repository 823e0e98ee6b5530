"""SMTP: any relay (Amazon SES, Brevo, a local Postfix) with the standard library.

``smtp://user:pass@host:587`` upgrades with STARTTLS (required before a
password is sent), ``smtps://user:pass@host:465`` is TLS from the first byte,
``smtp://localhost:25`` with no credentials is an unauthenticated local relay.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from .base import Message, Outcome, ProviderConfigError, SendResult, ascii_address, same_result
from .budget import OUT_OF_TIME, time_is_up
from .mime import build_mime, is_eight_bit


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to connect, parsed from ``SMTP_URL``."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpSettings:
    """``SMTP_URL`` as settings, or ``ProviderConfigError`` saying what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ProviderConfigError(
            "SMTP_URL must look like smtp://user:pass@host:587 or smtps://user:pass@host:465"
        )
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port or (465 if implicit else 587)
    except ValueError:
        raise ProviderConfigError("SMTP_URL has an invalid port") from None
    return SmtpSettings(
        host=parts.hostname,
        port=port,
        implicit_tls=implicit,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


_END_OF_DATA = b"\r\n.\r\n"


class _Tracked:
    """Knows whether the current message went out in full: its end-of-data line was written.

    After that line the relay may have taken the message whatever happens next,
    so a timeout or a dropped session then is no answer, not a failure. (No
    command line ends that way: the end-of-data line is only ever written by
    ``data()``.)
    """

    message_written = False

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """Start a message: nothing of it written yet."""
        self.message_written = False
        return super().mail(sender, options)  # type: ignore[misc]

    def send(self, s: bytes | str) -> None:
        """Write to the relay, noting when a message's last line has gone."""
        super().send(s)  # type: ignore[misc]
        if isinstance(s, bytes) and s.endswith(_END_OF_DATA):
            self.message_written = True


class _Session(_Tracked, smtplib.SMTP):
    """A plain or STARTTLS session that knows when a message went out in full."""


class _TlsSession(_Tracked, smtplib.SMTP_SSL):
    """A TLS-from-the-first-byte session that knows when a message went out in full."""


class SmtpProvider:
    """Sends each message of a batch over one SMTP session."""

    name = "smtp"
    max_batch = 100

    def __init__(self, settings: SmtpSettings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.tls = ssl.create_default_context()

    def connect(self) -> _Session | _TlsSession:
        """An open, secured when possible, logged-in SMTP session."""
        s = self.settings
        if s.implicit_tls:
            session: _Session | _TlsSession = _TlsSession(
                s.host, s.port, timeout=self.timeout, context=self.tls
            )
        else:
            session = _Session(s.host, s.port, timeout=self.timeout)
        try:
            session.ehlo()
            if not s.implicit_tls and session.has_extn("starttls"):
                session.starttls(context=self.tls)
                session.ehlo()
            if s.username:
                if not s.implicit_tls and session.sock is not None and not _is_tls(session):
                    raise smtplib.SMTPNotSupportedError("no STARTTLS: refusing to send a password")
                session.login(s.username, s.password or "")
        except BaseException:
            session.close()
            raise
        return session

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send every message on one session; a refused recipient fails only its message."""
        try:
            session = self.connect()
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPNotSupportedError) as exc:
            return same_result(messages, SendResult(Outcome.CONFIG_ERROR, error=str(exc)))
        except ssl.SSLCertVerificationError as exc:
            # Not a passing fault: the host name or the relay's certificate is wrong, and
            # retrying would spend every message's attempts on it. Nothing was sent, no
            # password included; sending pauses until the setting is fixed.
            error = f"the relay's TLS certificate is not trusted: {exc.verify_message}"
            return same_result(messages, SendResult(Outcome.CONFIG_ERROR, error=error))
        except (OSError, smtplib.SMTPException) as exc:
            down = SendResult(Outcome.TRANSIENT, error=f"connect: {exc}", provider_fault=True)
            return same_result(messages, down)
        results: list[SendResult] = []
        try:
            for message in messages:
                if results and time_is_up():  # the rest would outlast the batch's claim
                    untried = SendResult(Outcome.TRANSIENT, error=f"not tried: {OUT_OF_TIME.error}")
                    results += [untried] * (len(messages) - len(results))
                    break
                results.append(self._send_one(session, message))
                if _session_lost(results[-1]):
                    lost = SendResult(Outcome.TRANSIENT, error="not tried: the session ended")
                    results += [lost] * (len(messages) - len(results))
                    break
        finally:
            try:
                session.quit()
            except (OSError, smtplib.SMTPException):
                session.close()
        return results

    def _send_one(self, session: _Session | _TlsSession, message: Message) -> SendResult:
        try:
            recipient = ascii_address(message.to)
            if not recipient.isascii():
                # An internationalized mailbox (signups refuse them; older rows may hold
                # one): our MIME cannot carry it, and smtplib would fail the whole batch.
                return SendResult(Outcome.REJECTED, error="a mailbox name that is not ASCII")
            # 8bit bodies only to a relay that says it takes them (RFC 6152), and then
            # with BODY=8BITMIME; else quoted-printable.
            eight_bit = session.has_extn("8bitmime")
            mime = build_mime(message, eight_bit=eight_bit)
            options = ["BODY=8BITMIME"] if eight_bit and is_eight_bit(mime) else []
            session.send_message(mime, to_addrs=[recipient], mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reason = next(iter(exc.recipients.values()))
            return _by_code(code, reason)
        except smtplib.SMTPSenderRefused as exc:
            outcome = Outcome.CONFIG_ERROR if exc.smtp_code >= 500 else Outcome.TRANSIENT
            return SendResult(outcome, error=f"sender refused {exc.smtp_code}: {exc.smtp_error!r}")
        except smtplib.SMTPResponseException as exc:
            return _by_code(exc.smtp_code, exc.smtp_error)
        except (OSError, smtplib.SMTPServerDisconnected) as exc:
            if session.message_written:
                # The relay had the whole message and said nothing (a timeout waiting
                # for its 250, or the session dropped): it may have taken it.
                return SendResult(Outcome.UNKNOWN, error=f"sent, no answer from the relay: {exc}")
            return SendResult(Outcome.TRANSIENT, error=f"session lost: {exc}")
        except (smtplib.SMTPNotSupportedError, UnicodeError) as exc:
            # This address cannot be carried (SMTPUTF8 missing, a domain IDNA refuses):
            # it never will be, but the others still go.
            return SendResult(Outcome.REJECTED, error=f"cannot send to this address: {exc!r}")
        except (smtplib.SMTPException, ValueError, TypeError) as exc:
            # Anything else about this one message: retried, with back-off, and the
            # batch goes on. (Raised, it would mark the whole batch for a retry, and send
            # again what had already gone.)
            return SendResult(Outcome.TRANSIENT, error=f"could not send this message: {exc!r}")
        return SendResult(Outcome.SENT, provider_id=mime["Message-ID"])


def _by_code(code: int, reason: bytes | str) -> SendResult:
    text = reason.decode(errors="replace") if isinstance(reason, bytes) else reason
    outcome = Outcome.REJECTED if 500 <= code < 600 else Outcome.TRANSIENT
    return SendResult(outcome, error=f"SMTP {code}: {text}")


def _session_lost(result: SendResult) -> bool:
    if result.outcome is Outcome.UNKNOWN:
        return True
    return result.outcome is not Outcome.SENT and (result.error or "").startswith(
        ("session lost", "SMTP 421")
    )


def _is_tls(session: smtplib.SMTP) -> bool:
    return isinstance(session.sock, ssl.SSLSocket)


def build(config: Mapping[str, Any]) -> SmtpProvider:
    """The provider from ``SMTP_URL``, or ``ProviderConfigError``."""
    if not config.get("SMTP_URL"):
        raise ProviderConfigError("EMAIL_PROVIDER=smtp needs SMTP_URL: set it in the environment")
    return SmtpProvider(parse_smtp_url(config["SMTP_URL"]), config["PROVIDER_TIMEOUT"])
