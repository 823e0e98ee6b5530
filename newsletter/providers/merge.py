"""Finding the messages of a batch that differ only by per-recipient values.

SendGrid's personalizations and Mailgun's recipient variables share one
subject and body per request, while each of our messages carries its own
links (confirm, unsubscribe). This module turns messages back into one
template plus substitutions, and only groups messages whose template is
identical and whose substitution gives back each original exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from .base import Message

_ANGLE_URL = re.compile(r"<(https?://[^>]+)>")
_PREFIX = "%%newsletter-"  # placeholders are %%newsletter-0%%, %%newsletter-1%%, ...


@dataclass(frozen=True)
class Template:
    """What a group of messages shares; ``tags`` are placeholders for personal values."""

    sender: str
    subject: str
    text: str
    html: str
    labels: tuple[str, ...]  # the message's tags (categories), shared by the group
    tags: tuple[str, ...]


@dataclass
class Group:
    """Messages (by index in the batch) sent as one request, with their values."""

    template: Template
    indexes: list[int]
    values: list[dict[str, str]]  # per message: placeholder -> its own value


def personal_values(message: Message) -> list[str]:
    """The values only this recipient's copy holds, in a stable order: links, then address."""
    values = [message.action_url or ""]
    for value in message.headers.values():
        values.extend(_ANGLE_URL.findall(value))
    values.append(message.to)
    return [v for n, v in enumerate(values) if v and v not in values[:n]]


def _template(message: Message) -> tuple[Template, dict[str, str]] | None:
    fields = [message.subject, message.text, message.html]
    if any(_PREFIX in f for f in fields):
        return None  # a body that already holds our placeholder syntax: never merge it
    values: dict[str, str] = {}
    for n, value in enumerate(personal_values(message)):
        if not any(value in f for f in fields):
            continue
        tag = f"{_PREFIX}{n}%%"
        values[tag] = value
        fields = [f.replace(value, tag) for f in fields]
    template = Template(message.sender, *fields, labels=message.tags, tags=tuple(values))
    return template, values


def expand(text: str, values: dict[str, str]) -> str:
    """The text with each placeholder replaced by its value."""
    for tag, value in values.items():
        text = text.replace(tag, value)
    return text


def group(messages: Sequence[Message], limit: int) -> list[Group]:
    """Messages grouped by identical template, at most ``limit`` each; alone if not exact."""
    groups: list[Group] = []
    open_groups: dict[Template, Group] = {}
    for index, message in enumerate(messages):
        made = _template(message)
        if made is None or not _exact(message, *made):
            lonely = Template(
                message.sender, message.subject, message.text, message.html, message.tags, ()
            )
            groups.append(Group(lonely, [index], [{}]))
            continue
        template, values = made
        current = open_groups.get(template)
        if current is None or len(current.indexes) >= limit:
            current = Group(template, [], [])
            open_groups[template] = current
            groups.append(current)
        current.indexes.append(index)
        current.values.append(values)
    return groups


def _exact(message: Message, template: Template, values: dict[str, str]) -> bool:
    return (
        expand(template.subject, values) == message.subject
        and expand(template.text, values) == message.text
        and expand(template.html, values) == message.html
    )
