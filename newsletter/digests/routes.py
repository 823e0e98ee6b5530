"""The admin API of posts and digests: parse, call one service function, answer JSON."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy.exc import IntegrityError

from ..admin.auth import require_admin
from ..delivery.digest_email import render_shared
from ..errors import AppError
from ..extensions import db
from ..models import Post, iso
from ..security import EMAIL_PREVIEW_CSP
from ..subscriptions.addresses import InvalidAddress, normalize_email
from ..tokens import TEST_COPY_READER, current_tokens
from ..web import json_object, page_args
from . import feed, posts, service
from .text import TooLong

bp = Blueprint("digests", __name__, url_prefix="/admin")
bp.before_request(require_admin)


def _json_object() -> dict[str, Any]:
    """The JSON body as an object; an empty body is an empty object.

    Every endpoint here answers a bad body alike: 415 when it is not sent as
    JSON, 400 ``invalid_json`` when it does not parse or is no object.
    """
    if not request.get_data():
        return {}
    if not request.is_json:
        raise AppError(
            "unsupported_media_type", "Send the body as JSON (Content-Type: application/json).", 415
        )
    return json_object()


@bp.post("/posts")
def add_post() -> tuple[Response, int]:
    """Add a post: 201 when new, 200 with the stored one (unchanged) when its URL is known."""
    try:
        new = posts.validate(_json_object())
    except posts.InvalidPost as exc:
        raise AppError(exc.code, str(exc), 422, field=exc.field) from None
    post, created = posts.add_post(db.session, new, by_admin=True)
    db.session.commit()
    return jsonify(post.to_dict()), 201 if created else 200


@bp.get("/posts")
def list_posts() -> Response:
    """Posts, newest first, each saying whether a digest has taken it."""
    page, per_page = page_args()
    items, total = posts.list_posts(db.session, page, per_page)
    return jsonify(items=[p.to_dict() for p in items], total=total, page=page, per_page=per_page)


@bp.post("/posts/import-feed")
def import_feed() -> Response:
    """Import new posts from the feed at ``url`` (default ``FEED_URL``), ``mark_sent`` or not."""
    body = _json_object()
    given = body.get("url")
    if given is not None and not isinstance(given, str):
        raise AppError("invalid_url", "url must be a string.", 422, field="url")
    mark_sent = body.get("mark_sent", False)
    if not isinstance(mark_sent, bool):
        raise AppError(
            "invalid_mark_sent", "mark_sent must be true or false.", 422, field="mark_sent"
        )
    url = given or current_app.config["FEED_URL"]
    if not url:
        raise AppError("missing_url", "Give a feed url or set FEED_URL.", 422, field="url")
    config = current_app.config
    try:
        report = feed.import_feed(
            db.session, url, config["FEED_TIMEOUT"], config["FEED_MAX_BYTES"], mark_sent
        )
    except feed.FeedError as exc:
        db.session.rollback()
        raise AppError(exc.code, exc.message, exc.status, field="url") from None
    return jsonify(report.to_dict())


@bp.post("/posts/mark-sent")
def mark_posts_sent() -> Response:
    """Mark every waiting post dated up to ``before`` (default: now) as gone out, unmailed.

    ``dry_run``: how many it would mark, marking none.
    """
    body = _json_object()
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise AppError("invalid_dry_run", "dry_run must be true or false.", 422, field="dry_run")
    try:
        before = posts.parse_before(body.get("before"))
    except posts.InvalidPost as exc:
        raise AppError(exc.code, str(exc), 422, field=exc.field) from None
    if dry_run:
        would = posts.count_to_mark(db.session, before)
        db.session.rollback()  # read only
        return jsonify(marked=would, before=iso(before), dry_run=True)
    marked = posts.mark_sent(db.session, before)
    db.session.commit()
    return jsonify(marked=marked, before=iso(before))


@bp.post("/posts/<row_id:post_id>/unmark-sent")
def unmark_post_sent(post_id: int) -> Response:
    """Take back a post's "sent" mark: the next digest carries it."""
    post = posts.unmark_sent(db.session, post_id)
    if post is None:
        raise AppError("not_found", "No post has that id.", 404)
    db.session.commit()
    return jsonify(post.to_dict())


def _taken(exc: posts.PostTaken) -> AppError:
    return AppError("post_sent", str(exc), 409)


@bp.patch("/posts/<row_id:post_id>")
def edit_post(post_id: int) -> Response:
    """Correct a post no digest has taken: only the fields given change."""
    try:
        changes = posts.validate_changes(_json_object())
    except posts.InvalidPost as exc:
        raise AppError(exc.code, str(exc), 422, field=exc.field) from None
    try:
        post = posts.edit_post(db.session, post_id, changes)
    except posts.PostTaken as exc:
        db.session.rollback()
        raise _taken(exc) from None
    except IntegrityError:  # the only unique column given: url
        db.session.rollback()
        other = posts.post_at(db.session, changes.get("url", ""))
        which = f"Post {other.id} has" if other is not None else "Another post has"
        raise AppError("duplicate_url", f"{which} that url.", 409, field="url") from None
    if post is None:
        raise AppError("not_found", "No post has that id.", 404)
    db.session.commit()
    return jsonify(post.to_dict())


@bp.get("/posts/<row_id:post_id>")
def get_post(post_id: int) -> Response:
    """One post, as the list shows it."""
    post = db.session.get(Post, post_id)
    if post is None:
        raise AppError("not_found", "No post has that id.", 404)
    return jsonify(post.to_dict())


@bp.delete("/posts/<row_id:post_id>")
def delete_post(post_id: int) -> tuple[str, int]:
    """Delete a post no digest has taken (a feed import adds it again if the feed lists it)."""
    try:
        deleted = posts.delete_post(db.session, post_id)
    except posts.PostTaken as exc:
        db.session.rollback()
        raise _taken(exc) from None
    if not deleted:
        raise AppError("not_found", "No post has that id.", 404)
    db.session.commit()
    return "", 204


@bp.post("/posts/<row_id:post_id>/mark-sent")
def mark_post_sent(post_id: int) -> Response:
    """Mark one waiting post as gone out: no digest takes it, and no feed import brings it back."""
    try:
        post = posts.mark_one_sent(db.session, post_id)
    except posts.PostTaken as exc:
        db.session.rollback()
        raise _taken(exc) from None
    if post is None:
        raise AppError("not_found", "No post has that id.", 404)
    db.session.commit()
    return jsonify(post.to_dict())


@bp.post("/digests")
def trigger_digest() -> tuple[Response, int]:
    """Send every untaken post to every confirmed subscriber: 202, or 409 (no posts, no readers)."""
    subject = _json_object().get("subject")
    if subject is not None and not isinstance(subject, str):
        raise AppError("invalid_subject", "subject must be a string.", 422, field="subject")
    try:
        cleaned = service.clean_subject(subject)
    except TooLong as exc:
        message = f"The subject must be {exc}."
        raise AppError("invalid_subject", message, 422, field="subject") from None
    try:
        digest = service.create_digest(db.session, cleaned)
    except service.NoNewPosts:
        raise AppError("no_new_posts", service.nothing_to_send(db.session), 409) from None
    except service.NoRecipients as exc:
        raise AppError("no_recipients", str(exc), 409) from None
    return jsonify(service.report(db.session, digest).to_dict()), 202


@bp.get("/digests")
def digest_history() -> Response:
    """The latest digests, newest first, with their counts."""
    return jsonify(items=[r.to_dict(with_posts=False) for r in service.history(db.session)])


@bp.get("/digests/preview")
def preview() -> Response:
    """The next digest as its readers would see it (with a sample unsubscribe link)."""
    upcoming = service.next_posts(db.session)
    if not upcoming:
        raise AppError("no_new_posts", service.nothing_to_send(db.session), 409)
    subject = service.default_subject(current_app.config["NEWSLETTER_NAME"], upcoming)
    shared = render_shared(subject, upcoming)
    # A test copy's link: opened from the preview, it says it unsubscribes nobody (a
    # made-up one said "your mail program may have cut this link short").
    sample = current_tokens().unsubscribe_token(TEST_COPY_READER)
    _, html = shared.for_reader(f"{current_app.config['PUBLIC_URL']}/unsubscribe/{sample}")
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = EMAIL_PREVIEW_CSP
    return response


def _digest(digest_id: int) -> Any:
    try:
        return service.get_digest(db.session, digest_id)
    except service.DigestNotFound:
        raise AppError("not_found", "No digest has that id.", 404) from None


@bp.get("/digests/<row_id:digest_id>")
def get_digest(digest_id: int) -> Response:
    """One digest with live counts and timings."""
    return jsonify(service.report(db.session, _digest(digest_id)).to_dict())


@bp.post("/digests/<row_id:digest_id>/test")
def send_test(digest_id: int) -> tuple[Response, int]:
    """Queue a test copy of the digest to one address."""
    digest = _digest(digest_id)
    if not digest.posts:  # a digest that failed gave its posts back to the next one
        raise AppError(
            "no_posts",
            "This digest holds no posts any more: it failed, and its posts wait for the next "
            "digest. Send a test copy of that one.",
            409,
        )
    raw = _json_object().get("email")
    if raw is not None and not isinstance(raw, str):  # was "please enter your email"
        raise AppError("invalid_email", "email must be a string.", 422, field="email")
    try:
        address = normalize_email(raw or "")
    except InvalidAddress as exc:
        raise AppError(
            "invalid_email", str(exc) or "Give a valid email.", 422, field="email"
        ) from None
    try:
        delivery = service.queue_test_copy(db.session, digest, address)
    except service.SuppressedAddress:
        raise AppError(
            "suppressed_email",
            "That address bounced or complained: no mail goes to it.",
            409,
            field="email",
        ) from None
    return jsonify(status="queued", email=address, message_key=delivery.message_key), 202
