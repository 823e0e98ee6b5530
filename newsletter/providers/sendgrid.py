"""SendGrid: ``POST /v3/mail/send``, one personalization per recipient, 1,000 a request.

Personalizations share one subject and body, so a request carries the
messages that differ only by their own links and address (see ``merge``),
each put back by SendGrid ``substitutions``; its headers (List-Unsubscribe)
and our message key (``custom_args``) are per personalization anyway.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from email.utils import parseaddr
from functools import partial
from typing import Any

from .base import Message, Outcome, SendResult, same_result
from .http import HttpApi, common_result, json_body, refused, require, send_in_groups
from .merge import Group, group


class SendGridProvider:
    """Sends through SendGrid's v3 Mail Send."""

    name = "sendgrid"
    max_batch = 1000

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self.api = HttpApi(base_url, timeout, headers={"Authorization": f"Bearer {api_key}"})

    def payload(self, messages: Sequence[Message], grouped: Group) -> dict[str, Any]:
        """One request for a group of messages that share their template."""
        template = grouped.template
        name, address = parseaddr(template.sender)
        personalizations = []
        for message, values in zip(messages, grouped.values, strict=True):
            one: dict[str, Any] = {
                "to": [{"email": message.to}],
                "custom_args": {"newsletter_key": message.key},
            }
            if message.headers:
                one["headers"] = dict(message.headers)
            if values:
                one["substitutions"] = values
            personalizations.append(one)
        body: dict[str, Any] = {
            "personalizations": personalizations,
            "from": {"email": address, **({"name": name} if name else {})},
            "subject": template.subject,
            "content": [
                {"type": "text/plain", "value": template.text},
                {"type": "text/html", "value": template.html},
            ],
        }
        if template.labels:
            body["categories"] = list(dict.fromkeys(template.labels))[:10]
        return body

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Send the batch in as few requests as its templates allow."""
        calls = [
            (g.indexes, partial(self._send_group, [messages[i] for i in g.indexes], g))
            for g in group(messages, self.max_batch)
        ]
        return send_in_groups(calls, len(messages))

    def _send_group(self, messages: list[Message], grouped: Group) -> list[SendResult]:
        results = self._post(messages, grouped)
        if len(messages) > 1 and results[0].outcome is Outcome.REJECTED:
            # One bad address fails the whole request: send each alone to find it (and
            # stop at a rate limit or a refused key, as between groups).
            calls = [
                ([i], partial(self._post, [m], _alone(m, grouped, i)))
                for i, m in enumerate(messages)
            ]
            return send_in_groups(calls, len(messages))
        return results

    def _post(self, messages: list[Message], grouped: Group) -> list[SendResult]:
        answer = self.api.post_json("/v3/mail/send", self.payload(messages, grouped))
        if isinstance(answer, SendResult):
            return same_result(messages, answer)
        failed = common_result(answer)
        if failed is None and answer.status_code >= 400:
            failed = refused(answer, error_fields(json_body(answer)))
        if failed is not None:
            return same_result(messages, failed)
        # One X-Message-Id per request; SendGrid's event sg_message_id starts with it.
        return same_result(messages, SendResult(Outcome.SENT, answer.headers.get("X-Message-Id")))


def error_fields(body: Any) -> list[str]:
    """The fields SendGrid's error answer names: ``{"errors": [{"field": "from.email"}]}``."""
    errors = body.get("errors") if isinstance(body, Mapping) else None
    if not isinstance(errors, list):
        return []
    return [
        e["field"] for e in errors if isinstance(e, Mapping) and isinstance(e.get("field"), str)
    ]


def _alone(message: Message, grouped: Group, position: int) -> Group:
    return Group(grouped.template, [grouped.indexes[position]], [grouped.values[position]])


def build(config: Mapping[str, Any]) -> SendGridProvider:
    """The provider from the settings, or ``ProviderConfigError``."""
    require(config, "sendgrid", "SENDGRID_API_KEY")
    return SendGridProvider(
        config["SENDGRID_API_KEY"], config["SENDGRID_API_URL"], config["PROVIDER_TIMEOUT"]
    )
