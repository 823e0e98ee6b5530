"""Turning claimed deliveries into provider-neutral messages, kind by kind."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flask import current_app

from ..models import DeliveryKind, Status
from ..providers import Message, Stream
from ..tokens import current_tokens
from .ledger import Claimed, Recipient

# A renderer takes a batch of one kind and returns a message, or None to skip one.
Renderer = Callable[[Sequence[Claimed]], list[Message | None]]
RENDERERS: dict[DeliveryKind, Renderer] = {}


def renderer(kind: DeliveryKind) -> Callable[[Renderer], Renderer]:
    """Register the renderer of one delivery kind."""

    def register(fn: Renderer) -> Renderer:
        RENDERERS[kind] = fn
        return fn

    return register


def render_batch(deliveries: Sequence[Claimed]) -> list[Message | None]:
    """One message (or None: skip) per delivery, in order, each kind by its renderer."""
    out: list[Message | None] = [None] * len(deliveries)
    by_kind: dict[DeliveryKind, list[int]] = {}
    for index, delivery in enumerate(deliveries):
        by_kind.setdefault(delivery.kind, []).append(index)
    for kind, indexes in by_kind.items():
        messages = RENDERERS[kind]([deliveries[i] for i in indexes])
        for index, message in zip(indexes, messages, strict=True):
            out[index] = message
    return out


def public_link(path: str) -> str:
    """An absolute link under ``PUBLIC_URL``, as every link in an email must be."""
    return f"{current_app.config['PUBLIC_URL']}{path}"


def humanize_seconds(seconds: int) -> str:
    """A duration in the largest whole unit a reader would use: "7 days", "2 hours"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds"


def for_subscribers_in(
    status: Status,
    deliveries: Sequence[Claimed],
    build: Callable[[Claimed, Recipient], Message],
) -> list[Message | None]:
    """``build`` each delivery whose subscriber is still ``status``; None (skip) the rest.

    A subscriber who left, bounced or complained after the delivery was
    queued is skipped when its turn comes, whatever the kind of email.
    """
    return [
        build(d, d.subscriber)
        if d.subscriber is not None and d.subscriber.status is status
        else None
        for d in deliveries
    ]


@renderer(DeliveryKind.CONFIRMATION)
def render_confirmations(deliveries: Sequence[Claimed]) -> list[Message | None]:
    """The double-opt-in email, with a fresh confirm link, for still-pending subscribers."""
    config = current_app.config
    tokens = current_tokens()
    valid_for = humanize_seconds(config["CONFIRM_MAX_AGE"])
    # Looked up once per batch and rendered directly: render_template would run the
    # pages' context processors and signals for every message, which an email does
    # not use (a third of the cost of sending a confirmation).
    text_template = current_app.jinja_env.get_template("emails/confirm.txt")
    html_template = current_app.jinja_env.get_template("emails/confirm.html")

    def build(delivery: Claimed, subscriber: Recipient) -> Message:
        link = public_link(
            f"/confirm/{tokens.confirm_token(subscriber.public_id, subscriber.round)}"
        )
        context = {
            "newsletter": config["NEWSLETTER_NAME"],
            "name": subscriber.name,
            "confirm_url": link,
            "valid_for": valid_for,
        }
        return Message(
            key=delivery.message_key,
            to=subscriber.email,
            sender=config["MAIL_FROM"],
            subject=f"Please confirm your subscription to {config['NEWSLETTER_NAME']}",
            text=text_template.render(context),
            html=html_template.render(context),
            tags=("confirmation",),
            stream=Stream.TRANSACTIONAL,
            action_url=link,
        )

    return for_subscribers_in(Status.PENDING, deliveries, build)
