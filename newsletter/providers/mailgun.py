"""Mailgun: ``POST /v3/{domain}/messages`` as multipart/form-data, one message a request.

Mailgun's batch form (many ``to`` with ``recipient-variables``) substitutes
per-recipient values in the subject and bodies, but its documentation
promises no substitution in ``h:`` headers nor ``v:`` variables, and each of
our messages needs its own ``List-Unsubscribe`` header and message key. So
each message is its own request on the pooled connection: correct first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any
from urllib.parse import quote

from .base import Message, Outcome, SendResult
from .http import HttpApi, common_result, json_body, named_fields, refused, require, send_in_groups

Fields = list[tuple[str, tuple[None, str]]]


class MailgunProvider:
    """Sends through Mailgun's messages API of one sending domain."""

    name = "mailgun"
    max_batch = 1000  # Mailgun's recipients per call; we send one message per call

    def __init__(self, api_key: str, domain: str, base_url: str, timeout: float) -> None:
        self.api = HttpApi(base_url, timeout, auth=("api", api_key))
        self.path = f"/v3/{quote(domain, safe='')}/messages"

    def fields(self, message: Message) -> Fields:
        """One message as Mailgun's form fields; our key as the ``v:newsletter_key`` variable."""
        fields: Fields = [
            ("from", (None, message.sender)),
            ("to", (None, message.to)),
            ("subject", (None, message.subject)),
            ("text", (None, message.text)),
            ("html", (None, message.html)),
            ("v:newsletter_key", (None, message.key)),
        ]
        fields += [(f"h:{name}", (None, value)) for name, value in message.headers.items()]
        fields += [("o:tag", (None, tag)) for tag in message.tags[:3]]
        return fields

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send each message in turn; stop early on a rate limit or configuration error."""
        calls = [([i], partial(self._post, m)) for i, m in enumerate(messages)]
        return send_in_groups(calls, len(messages))

    def _post(self, message: Message) -> list[SendResult]:
        answer = self.api.post(self.path, files=self.fields(message))
        if isinstance(answer, SendResult):
            return [answer]
        failed = common_result(answer)
        if failed is None and answer.status_code >= 400:
            # 404: the domain is unknown to Mailgun; 400: the parameter its message names
            # ("'from' parameter is not a valid address") was refused.
            body = json_body(answer)
            failed = refused(answer, named_fields(_get(body, "message")))
        if failed is not None:
            return [failed]
        return [SendResult(Outcome.SENT, provider_id=_get(json_body(answer), "id"))]


def _get(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, Mapping) else None


def build(config: Mapping[str, Any]) -> MailgunProvider:
    """The provider from the settings, or ``ProviderConfigError``."""
    require(config, "mailgun", "MAILGUN_API_KEY", "MAILGUN_DOMAIN")
    return MailgunProvider(
        config["MAILGUN_API_KEY"],
        config["MAILGUN_DOMAIN"],
        config["MAILGUN_API_URL"],
        config["PROVIDER_TIMEOUT"],
    )
