"""What every HTTP provider shares: a pooled session, timeouts, and reading the answer."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import requests

from ..http_pools import MixedInAdapter, pools_with
from . import encoded
from .base import Outcome, ProviderConfigError, SendResult
from .budget import OUT_OF_TIME, time_is_up

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0  # seconds to open a connection; reads get PROVIDER_TIMEOUT


# Whether this thread's last request was written out in full: a read timeout after it
# leaves the outcome unknown; one before it (a TLS handshake's, which urllib3 reports
# as a read timeout too) sent nothing.
_written = threading.local()


class _SaysWritten:
    """A urllib3 connection that notes, once a request is written in full, that it was."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        super().request(*args, **kwargs)  # type: ignore[misc]
        _written.done = True


class _Adapter(MixedInAdapter):
    """requests' adapter, whose connections say when a request has gone out in full."""

    pools = pools_with(_SaysWritten)


class HttpApi:
    """One provider's base URL, credentials and pooled connections."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = (min(CONNECT_TIMEOUT, timeout), timeout)
        self.session = requests.Session()
        self.session.mount("https://", _Adapter(pool_maxsize=4))
        self.session.mount("http://", _Adapter(pool_maxsize=4))
        self.session.headers.update({"Accept": "application/json", **(headers or {})})
        self.session.auth = auth

    def post_json(
        self, path: str, payload: Any, headers: Mapping[str, str] | None = None
    ) -> requests.Response | SendResult:
        """POST ``payload`` as JSON, encoded by orjson (``encoded.dumps``).

        A digest batch is 500 copies of a several-kilobyte body: ``json.dumps``
        (what ``requests``' ``json=`` uses) spent about 10 ms on it, orjson
        under 1 ms, and splicing bodies encoded once per digest less again.
        """
        return self.post(
            path,
            data=encoded.dumps(payload),
            headers={"Content-Type": "application/json", **(headers or {})},
        )

    def get_json(self, path: str, params: Mapping[str, str]) -> Any:
        """GET a JSON answer under the base URL; None when it fails or is not JSON."""
        try:
            answer = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout)
        except requests.RequestException:
            return None
        return json_body(answer) if answer.ok else None

    def post(self, path: str, **kwargs: Any) -> requests.Response | SendResult:
        """POST under the base URL; a network failure comes back as a result.

        Transient when nothing can have been taken (no connection, or one that
        failed); unknown when the whole request went out and no answer came in
        ``PROVIDER_TIMEOUT``: the provider may have taken it, and none of
        Postmark, SendGrid and Mailgun can tell a request sent again from a new
        one. Retried, a provider slower than the timeout sent every reader of
        the batch one more copy each time.
        """
        url = f"{self.base_url}{path}"
        _written.done = False
        try:
            return self.session.post(url, timeout=self.timeout, **kwargs)
        except requests.ReadTimeout as exc:
            if _written.done:
                return SendResult(Outcome.UNKNOWN, error=f"sent, no answer in time: {exc}")
            return _fault(f"timed out before sending: {exc}")
        except requests.Timeout as exc:  # connecting: nothing went out
            return _fault(f"timed out: {exc}")
        except requests.ConnectionError as exc:
            return _fault(f"connection failed: {exc}")


def _fault(error: str) -> SendResult:
    """A transient failure of the provider itself: unreachable, too slow to connect, a 5xx."""
    return SendResult(Outcome.TRANSIENT, error=error, provider_fault=True)


# The longest wait a provider's Retry-After can impose: a day (a daily quota's reset).
# More (or "inf") would hold sending for good, and overflows the date it is added to.
MAX_RETRY_AFTER = 86_400.0


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds to wait (at most a day): delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return min(MAX_RETRY_AFTER, seconds) if seconds > 0 else 0.0  # NaN: no wait
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return min(MAX_RETRY_AFTER, max(0.0, (when - current).total_seconds()))


def error_text(response: requests.Response) -> str:
    """A short description of a failed answer, for logs and ``last_error``."""
    body = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {body[:300]}"


def common_result(response: requests.Response) -> SendResult | None:
    """The result any provider gives a status the same way; None for 2xx and other 4xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    if status == 429:
        return SendResult(
            Outcome.RATE_LIMITED,
            error=error_text(response),
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    if status in (401, 403):
        return SendResult(Outcome.CONFIG_ERROR, error=error_text(response))
    if status >= 500 or status in (408, 409, 425):
        return _fault(error_text(response))
    if not 400 <= status < 500:  # 1xx/3xx: not an answer a send API gives
        return _fault(error_text(response))
    return None


# The fields every message of ours fills from the settings (MAIL_FROM), the same in each:
# the sender and the reply-to, however a provider names them (SendGrid ``from.email``,
# ``reply_to_list``; Mailgun ``from``, ``h:Reply-To``; Resend ``from``, ``reply_to``).
_SENDER_FIELD = re.compile(r"(?:h:)?(?:from|sender|reply[-_]?to(?:_list)?)(?:$|[.\[])", re.I)
# A field an error message names: quoted (Resend's "Invalid `from` field", Mailgun's
# "'from' parameter is not a valid address"), or its first word before "parameter" or
# "field" (Mailgun's "from parameter is missing").
_NAMED = re.compile(r"""[`'"]([\w.:\[\]-]+)[`'"]|^\W*([\w.:-]+)\W*\s+(?:parameter|field)\b""")


def named_fields(message: object) -> list[str]:
    """The field a provider's error message names first (none, or one), for ``refused``.

    Only the first: what a message quotes after its field may be the reader's
    own value ("Invalid 'To' address: 'from.me'"), which must never read as
    our sender and pause all sending.
    """
    if not isinstance(message, str):
        return []
    return [quoted or leading for quoted, leading in _NAMED.findall(message)][:1]


def names_the_sender(fields: Iterable[str]) -> bool:
    """Whether any field named is the sender or reply-to (an address is never one)."""
    return any(_SENDER_FIELD.match(name) and "@" not in name for name in fields)


def refused(response: requests.Response, fields: Iterable[str]) -> SendResult:
    """What a 4xx that ``common_result`` left means, by the fields the provider names.

    A refused sender (or reply-to) is our setting, the same in every message: each
    later message would be refused alike, so sending pauses (a configuration error,
    nothing spent), as for a 404 (an unknown domain or endpoint). Any other field, or
    none named, refuses the messages of this request for good.
    """
    ours = response.status_code == 404 or names_the_sender(fields)
    return SendResult(
        Outcome.CONFIG_ERROR if ours else Outcome.REJECTED, error=error_text(response)
    )


def json_body(response: requests.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        log.warning("provider answered non-JSON: %s", error_text(response))
        return None


def stops_the_batch(result: SendResult) -> bool:
    """True for answers that make the batch's remaining requests pointless."""
    return result.outcome in (Outcome.RATE_LIMITED, Outcome.CONFIG_ERROR)


def send_in_groups(
    calls: Sequence[tuple[Sequence[int], Callable[[], list[SendResult]]]], total: int
) -> list[SendResult]:
    """Make each (message indexes, request) call in turn; after a rate limit or a
    configuration error, make no more and give their messages the same answer.

    After a failure or a request left unanswered, make no more either: their
    messages are retried with the batch's back-off. Mailgun sends a message a
    call: a provider slower than ``PROVIDER_TIMEOUT`` held a batch of 100 for
    100 timeouts, past ``DISPATCH_LEASE``, and PostgreSQL ended the claim
    before its answers were written: the batch went out again, for ever. Nor
    once the batch's time is up (``budget``): slow answers, each in time, did
    the same.
    """
    results: list[SendResult | None] = [None] * total
    stop: SendResult | None = None
    for made, (indexes, call) in enumerate(calls):
        if stop is None and made and time_is_up():  # the rest would outlast the claim
            stop = OUT_OF_TIME
        answers = call() if stop is None else [_untried(stop)] * len(indexes)
        for index, answer in zip(indexes, answers, strict=True):
            results[index] = answer
            if stop is None and (
                stops_the_batch(answer) or answer.outcome in (Outcome.TRANSIENT, Outcome.UNKNOWN)
            ):
                stop = answer
    missing = [i for i, r in enumerate(results) if r is None]
    if missing:
        raise ValueError(f"messages {missing} belong to no call")
    return results  # type: ignore[return-value]


def _untried(cause: SendResult) -> SendResult:
    """The result of a message not tried because an earlier request stopped the batch."""
    waits = cause.outcome in (Outcome.RATE_LIMITED, Outcome.CONFIG_ERROR)
    return SendResult(
        cause.outcome if waits else Outcome.TRANSIENT,  # never "unknown": it did not go out
        error=f"not tried: {cause.error}",
        retry_after=cause.retry_after,
        provider_fault=cause.provider_fault,
    )


def require(config: Mapping[str, Any], provider: str, *names: str) -> None:
    """Raise ``ProviderConfigError`` naming every setting ``provider`` lacks."""
    missing = [name for name in names if not config.get(name)]
    if missing:
        raise ProviderConfigError(
            f"EMAIL_PROVIDER={provider} needs {' and '.join(missing)}: set "
            f"{'them' if len(missing) > 1 else 'it'} in the environment"
        )
