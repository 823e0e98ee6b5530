"""Email providers: one module each, chosen by ``EMAIL_PROVIDER`` through this registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from . import mailgun, postmark, resend, sendgrid, smtp
from .base import Message, Outcome, Provider, ProviderConfigError, SendResult, Stream
from .outbox import OutboxProvider

__all__ = [
    "REGISTRY",
    "Message",
    "Outcome",
    "Provider",
    "ProviderConfigError",
    "SendResult",
    "Stream",
    "build_provider",
]


def _outbox(config: Mapping[str, Any]) -> Provider:
    return OutboxProvider(config["OUTBOX_DIR"] or Path(config["INSTANCE_PATH"]) / "outbox")


# name -> factory(config). A new provider is one module and one line here.
REGISTRY: dict[str, Callable[[Mapping[str, Any]], Provider]] = {
    "outbox": _outbox,
    "smtp": smtp.build,
    "postmark": postmark.build,
    "sendgrid": sendgrid.build,
    "mailgun": mailgun.build,
    "resend": resend.build,
}


def build_provider(config: Mapping[str, Any]) -> Provider:
    """The provider ``EMAIL_PROVIDER`` names, or ``ProviderConfigError``."""
    name = config["EMAIL_PROVIDER"]
    try:
        factory = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ProviderConfigError(f"EMAIL_PROVIDER={name!r} is not one of: {known}") from None
    return factory(config)
