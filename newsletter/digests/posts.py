"""Posts: validate and store them, once per URL, and list them for the admin."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..models import Post, utcnow
from .text import TooLong, one_line, plain_summary, text_line, web_url, whole

TITLE_MAX = 500
URL_MAX = 2048
AUTHOR_MAX = 200
CATEGORIES_MAX = 20
CATEGORY_MAX = 100  # characters of one category


class InvalidPost(ValueError):
    """A post field that cannot be accepted; ``code`` and ``field`` say which and why."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class NewPost:
    """A validated post, ready to store."""

    title: str
    url: str
    summary: str | None = None
    author: str | None = None
    published_at: datetime | None = None
    categories: tuple[str, ...] = ()
    guid: str | None = None


def _text(data: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidPost(f"missing_{name}", f"{name} is required.", name)
        return None
    if not isinstance(value, str):
        raise InvalidPost(f"invalid_{name}", f"{name} must be a string.", name)
    return value.strip()


def _line(data: dict[str, Any], name: str, limit: int, required: bool = False) -> str | None:
    """An admin's one-line text field, cleaned, and refused (not cut) past ``limit`` characters.

    Cut, as a feed's fields are, the admin's own title lost its end unseen.
    """
    try:
        return whole(text_line, _text(data, name, required), limit)
    except TooLong as exc:
        raise InvalidPost(f"invalid_{name}", f"{name} must be {exc}.", name) from None


def parse_url(value: str | None) -> str:
    """An http(s) link of reasonable length, or ``InvalidPost``."""
    if not value:
        raise InvalidPost("missing_url", "url is required.", "url")
    url = web_url(value)
    if url is None:
        raise InvalidPost("invalid_url", "url must be an absolute http(s) link.", "url")
    if len(url) > URL_MAX:
        raise InvalidPost(
            "invalid_url",
            f"url must be at most {URL_MAX:,} characters once percent-encoded "
            f"(this one is {len(url):,}).",
            "url",
        )
    return url


def parse_time(value: Any, field: str = "published_at") -> datetime | None:
    """An ISO 8601 time (a naive one is taken as UTC), or ``InvalidPost`` about ``field``."""
    if value in (None, ""):
        return None
    bad = InvalidPost(f"invalid_{field}", f"{field} must be ISO 8601.", field)
    if not isinstance(value, str):
        raise bad
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # overflow: an offset past year 1 or 9999, in UTC
        raise bad from None


def parse_categories(value: Any) -> tuple[str, ...]:
    """A short list of short strings, or ``InvalidPost``."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidPost(
            "invalid_categories", "categories must be a list of strings.", "categories"
        )
    try:
        for category in value:
            whole(one_line, category, CATEGORY_MAX)
    except TooLong as exc:
        message = f"each category must be {exc}."
        raise InvalidPost("invalid_categories", message, "categories") from None
    distinct = _distinct(value)
    if len(distinct) > CATEGORIES_MAX:  # refused, not cut unseen (a feed's are cut)
        message = f"give at most {CATEGORIES_MAX} categories ({len(distinct)} given)."
        raise InvalidPost("invalid_categories", message, "categories")
    return distinct


def _distinct(values: Iterable[str | None]) -> tuple[str, ...]:
    """Categories as plain text, each once, in order."""
    return tuple(dict.fromkeys(c for c in (one_line(v, CATEGORY_MAX) for v in values) if c))


def clean_categories(values: Iterable[str | None]) -> tuple[str, ...]:
    """Categories as a post keeps them: plain text, each once, at most ``CATEGORIES_MAX``."""
    return _distinct(values)[:CATEGORIES_MAX]


def _title(data: dict[str, Any]) -> str:
    title = _line(data, "title", TITLE_MAX, required=True)
    if not title:
        raise InvalidPost("missing_title", "title is required.", "title")
    return title


# Each field an admin gives, and how it is read: one rule for a new post and a correction.
# Plain text, kept as the admin wrote it ("The <details> element", "AT&amp;T"): every
# page and email escapes it.
_FIELDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "title": _title,
    "url": lambda data: parse_url(_text(data, "url", required=True)),
    "summary": lambda data: plain_summary(_text(data, "summary")),
    "author": lambda data: _line(data, "author", AUTHOR_MAX),
    "published_at": lambda data: parse_time(data.get("published_at")),
    "categories": lambda data: parse_categories(data.get("categories")),
}


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise InvalidPost("invalid_body", "Send a JSON object.", "body")
    return data


def validate(data: Any) -> NewPost:
    """A ``NewPost`` from an admin's JSON object, or ``InvalidPost``."""
    data = _object(data)
    return NewPost(**{name: read(data) for name, read in _FIELDS.items()})


def validate_changes(data: Any) -> dict[str, Any]:
    """The fields an admin's correction sets, each read as for a new post; ``InvalidPost`` else.

    A field we do not know is refused, not ignored: a misspelt ``titel`` would
    have answered 200 with nothing changed.
    """
    data = _object(data)
    editable = ", ".join(_FIELDS)
    for name in data:
        if name not in _FIELDS:
            raise InvalidPost("unknown_field", f"{name} cannot be set: give {editable}.", name)
    if not data:
        raise InvalidPost("nothing_to_change", f"Give at least one of {editable}.", "body")
    return {name: _FIELDS[name](data) for name in data}


def _insert_ignoring_duplicates(session: Session) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING``: a duplicate URL or guid is not an error."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(
        Post
    ).on_conflict_do_nothing()


def add_post(
    session: Session, post: NewPost, marked_sent_at: datetime | None = None, by_admin: bool = False
) -> tuple[Post, bool]:
    """Store the post unless its URL (or guid) is known; the stored one and whether it is new.

    ``marked_sent_at``: store a new post as gone out already (no digest takes it).
    ``by_admin``: the admin wrote it (``edited_at`` set): a feed that lists the
    same link leaves it as written (a guid-less feed rewrote it).
    """
    now = utcnow()
    # RETURNING the entity: the new post comes back loaded, with no SELECT of its own
    # (a feed import of an archive made one per post).
    created = session.scalars(
        _insert_ignoring_duplicates(session)
        .values(
            title=post.title,
            url=post.url,
            summary=post.summary,
            author=post.author,
            published_at=post.published_at,
            categories=list(post.categories),
            guid=post.guid,
            created_at=now,
            marked_sent_at=marked_sent_at,
            edited_at=now if by_admin else None,
        )
        .returning(Post)
    ).one_or_none()
    if created is not None:
        return created, True
    existing = post_at(session, post.url)
    if existing is None and post.guid:
        existing = session.scalars(select(Post).where(Post.guid == post.guid)).one()
    if existing is None:
        raise RuntimeError("a post insert conflicted but neither its URL nor its guid is stored")
    return existing, False


def post_at(session: Session, url: str) -> Post | None:
    """The post whose link is ``url``, if any."""
    return session.scalars(select(Post).where(Post.url == url)).one_or_none()


def shown_at() -> Any:
    """A post's date as readers see it (``Post.shown_at``), in SQL."""
    return func.coalesce(Post.published_at, Post.created_at)


def newest_first() -> Any:
    """The order readers and admins see posts in."""
    return (shown_at().desc(), Post.id.desc())


def waiting() -> tuple[Any, ...]:
    """Posts no digest has taken and the admin has not marked as sent."""
    return (Post.digest_id.is_(None), Post.marked_sent_at.is_(None))


def list_posts(session: Session, page: int, per_page: int) -> tuple[list[Post], int]:
    """One page of posts, newest first, and how many there are."""
    total = session.scalar(select(func.count()).select_from(Post)) or 0
    items = session.scalars(
        select(Post).order_by(*newest_first()).limit(per_page).offset((page - 1) * per_page)
    ).all()
    return list(items), total


def parse_before(value: Any) -> datetime:
    """``before`` of mark-sent: an ISO 8601 time, now when not given; ``InvalidPost`` else.

    An empty one is refused, not read as "now": a form's empty field sent as it was.
    """
    if isinstance(value, str) and not value.strip():
        raise InvalidPost("invalid_before", "before must be ISO 8601.", "before")
    return parse_time(value, "before") or utcnow()


def mark_sent(session: Session, before: datetime) -> int:
    """Mark every waiting post dated up to ``before`` as gone out, without mailing it; how many.

    For a blog connected with its archive: its readers have seen those posts,
    and the first digest should carry only what comes next. A post a digest
    has taken is left as it is.
    """
    result = session.execute(
        update(Post).where(*waiting(), shown_at() <= before).values(marked_sent_at=utcnow())
    )
    return result.rowcount or 0


def count_to_mark(session: Session, before: datetime) -> int:
    """How many posts ``mark_sent`` would mark now, marking none (a dry run: a read only)."""
    return session.scalar(select(func.count()).where(*waiting(), shown_at() <= before)) or 0


def unmark_sent(session: Session, post_id: int) -> Post | None:
    """Take back a post's mark, so the next digest carries it; the post (None: no such id).

    For a post marked by mistake (``mark_sent`` up to now marks the one added a
    minute ago too). A post a digest took is left as it is.
    """
    post = session.get(Post, post_id, with_for_update=True)
    if post is not None and post.marked_sent_at is not None:
        post.marked_sent_at = None
    return post


class PostTaken(Exception):
    """A digest took the post: its readers have it as it was, and it stays so."""

    def __init__(self, digest_id: int) -> None:
        super().__init__(
            f"Digest {digest_id} took this post: its readers get it as it was taken, so "
            "it cannot be changed or deleted. A correction goes on the blog, or in a new post."
        )
        self.digest_id = digest_id


def _guarded(session: Session, post_id: int, write: Callable[[], int]) -> bool:
    """Run ``write`` (rows written, guarded by ``digest_id IS NULL``); whether the post is there.

    ``PostTaken`` when a digest has it. Tried twice: a digest that failed may
    give the post back between the write and the look that follows it.
    """
    for _ in range(2):
        if write():
            return True
        taken = session.execute(select(Post.digest_id).where(Post.id == post_id)).first()
        if taken is None:
            return False
        if taken.digest_id is not None:
            raise PostTaken(taken.digest_id)
    return True


def _untaken(post_id: int) -> tuple[Any, ...]:
    return (Post.id == post_id, Post.digest_id.is_(None))


def edit_post(session: Session, post_id: int, changes: dict[str, Any]) -> Post | None:
    """Correct a post no digest has taken; the post (None: no such id), or ``PostTaken``.

    The write comes first, guarded by ``digest_id IS NULL``: a digest triggered
    at the same time either takes the corrected post or leaves the correction
    refused, never sends one text while the admin sees another. A URL another
    post has raises the database's ``IntegrityError``.
    """
    values = {name: list(v) if name == "categories" else v for name, v in changes.items()}
    statement = update(Post).where(*_untaken(post_id)).values(**values, edited_at=utcnow())
    if not _guarded(session, post_id, lambda: session.execute(statement).rowcount):
        return None
    return session.get(Post, post_id, populate_existing=True)


def delete_post(session: Session, post_id: int) -> bool:
    """Delete a post no digest has taken; whether there was one, or ``PostTaken``."""
    statement = delete(Post).where(*_untaken(post_id))
    return _guarded(session, post_id, lambda: session.execute(statement).rowcount)


def mark_one_sent(session: Session, post_id: int) -> Post | None:
    """Mark one post no digest has taken as gone out, unmailed; the post (None: no such id).

    ``PostTaken`` for a post a digest took, as a correction gets; one marked
    already keeps its first mark. Unlike a deletion, a feed import does not
    bring it back.
    """
    statement = (
        update(Post)
        .where(*_untaken(post_id))
        .values(marked_sent_at=func.coalesce(Post.marked_sent_at, utcnow()))
    )
    if not _guarded(session, post_id, lambda: session.execute(statement).rowcount):
        return None
    return session.get(Post, post_id, populate_existing=True)
