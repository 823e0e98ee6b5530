"""Turning claimed deliveries into provider-neutral messages, kind by kind."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping, Sequence

from flask import current_app
from markupsafe import escape

from ..models import DeliveryKind, Status
from ..providers import Message, Stream
from ..providers.encoded import PreEncoded, json_content
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


def new_mark(name: str) -> str:
    """A random mark to render in place of a per-reader value; no text holds it by chance."""
    return f"{name}-{secrets.token_hex(16)}"


class _Spliced:
    """One body cut at its marks, as text and as JSON, to take each reader's values."""

    def __init__(self, body: str, marks: Sequence[str]) -> None:
        pieces = re.split(f"({'|'.join(map(re.escape, marks))})", body) if marks else [body]
        self.literals = pieces[0::2]  # the body between marks: one more than the slots
        self.slots = pieces[1::2]  # the mark each slot held
        self.encoded = [json_content(piece) for piece in self.literals]

    def fill(self, values: Mapping[str, str]) -> PreEncoded:
        """The body with each slot's value put in, and its JSON encoding spliced alike."""
        text, encoded = [self.literals[0]], [b'"', self.encoded[0]]
        for mark, literal, literal_encoded in zip(
            self.slots, self.literals[1:], self.encoded[1:], strict=True
        ):
            value = values.get(mark, mark)
            text += (value, literal)
            encoded += (json_content(value), literal_encoded)
        encoded.append(b'"')
        return PreEncoded("".join(text), b"".join(encoded))


class MarkedBody:
    """A text and HTML body rendered once, with marks (``new_mark``) where each reader's values go.

    Rendering templates per message is what sending cost most; a copy is this
    body with its reader's values put in, escaped for HTML as the template
    would have escaped them. Each part comes with its JSON encoding, spliced
    from pieces encoded once (``providers.encoded``): encoding each copy's
    whole body was the next largest cost.
    """

    def __init__(self, text: str, html: str, marks: Sequence[str]) -> None:
        """The bodies as rendered with ``marks`` in place of the readers' values."""
        self._text, self._html = _Spliced(text, marks), _Spliced(html, marks)

    def fill(self, values: Mapping[str, str]) -> tuple[PreEncoded, PreEncoded]:
        """The text and HTML with each mark replaced by its value (HTML-escaped in the HTML)."""
        escaped = {mark: str(escape(value)) for mark, value in values.items()}
        return self._text.fill(values), self._html.fill(escaped)


class ConfirmBodies:
    """A batch's confirmation body, rendered once; each reader's copy gets its own link.

    No name in it: the signup form's ``name`` is not verified, and anyone can
    sign any address up, so it would let a stranger put words (or links) in
    an email we send. ``tests/delivery/test_confirm_render.py`` holds a copy
    to the templates' own rendering for that reader.
    """

    def __init__(self, context: dict) -> None:
        """The body for a batch whose templates see ``context`` (and the reader's link)."""
        self.context = context
        self.link_mark = new_mark("link")
        self._body: MarkedBody | None = None

    def for_reader(self, link: str) -> tuple[str, str]:
        """The text and HTML of one reader's confirmation."""
        if self._body is None:
            env = current_app.jinja_env
            values = {**self.context, "confirm_url": self.link_mark}
            self._body = MarkedBody(
                env.get_template("emails/confirm.txt").render(values),
                env.get_template("emails/confirm.html").render(values),
                (self.link_mark,),
            )
        return self._body.fill({self.link_mark: link})


@renderer(DeliveryKind.CONFIRMATION)
def render_confirmations(deliveries: Sequence[Claimed]) -> list[Message | None]:
    """The double-opt-in email, with a fresh confirm link, for still-pending subscribers."""
    config = current_app.config
    tokens = current_tokens()
    bodies = ConfirmBodies(
        {
            "newsletter": config["NEWSLETTER_NAME"],
            "valid_for": humanize_seconds(config["CONFIRM_MAX_AGE"]),
        }
    )
    subject = f"Please confirm your subscription to {config['NEWSLETTER_NAME']}"

    def build(delivery: Claimed, subscriber: Recipient) -> Message:
        link = public_link(
            f"/confirm/{tokens.confirm_token(subscriber.public_id, subscriber.round)}"
        )
        text, html = bodies.for_reader(link)
        return Message(
            key=delivery.message_key,
            to=subscriber.email,
            sender=config["MAIL_FROM"],
            subject=subject,
            text=text,
            html=html,
            tags=("confirmation",),
            stream=Stream.TRANSACTIONAL,
            action_url=link,
        )

    return for_subscribers_in(Status.PENDING, deliveries, build)
