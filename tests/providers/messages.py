"""Provider-neutral messages as the dispatcher hands them over: a digest per recipient."""

from __future__ import annotations

from newsletter.providers import Message, Stream


def digest(n: int, to: str | None = None) -> Message:
    """A digest to recipient ``n`` with its own unsubscribe link in both bodies and headers."""
    link = f"http://news.example.org/unsubscribe/token-{n}"
    return Message(
        key=f"00000000-0000-0000-0000-{n:012d}",
        to=to or f"reader{n}@example.com",
        sender="Clinic News <news@clinic.example.org>",
        subject="Clinic News: 2 new posts",
        text=f"New posts.\n\nUnsubscribe: {link}\n",
        html=f'<p>New posts.</p><p><a href="{link}">Unsubscribe</a></p>',
        headers={
            "List-Unsubscribe": f"<{link}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        tags=("digest",),
        stream=Stream.BROADCAST,
    )


def confirmation(n: int) -> Message:
    """A confirmation email, on the transactional stream."""
    link = f"http://news.example.org/confirm/token-{n}"
    return Message(
        key=f"10000000-0000-0000-0000-{n:012d}",
        to=f"new{n}@example.com",
        sender="Clinic News <news@clinic.example.org>",
        subject="Please confirm",
        text=f"Confirm: {link}\n",
        html=f'<a href="{link}">Confirm</a>',
        tags=("confirmation",),
        action_url=link,
    )
