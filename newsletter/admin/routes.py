"""The admin API: subscribers, their history, erasure, CSV in and out, stats."""

from __future__ import annotations

import shutil
import tempfile
from typing import IO

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context
from sqlalchemy import func, or_, select

from ..delivery import ledger
from ..delivery.health import reported_dispatch_health
from ..digests.service import digests_by_status
from ..errors import AppError
from ..extensions import db
from ..models import Delivery, DeliveryStatus, Status, Subscriber
from ..subscriptions.addresses import lookup_form
from ..subscriptions.erasure import erase, forget_mail_to
from ..subscriptions.importer import ImportFormatError, import_csv
from ..subscriptions.personal_data import personal_data
from ..web import bool_query_arg, page_args, query_arg
from .auth import require_admin
from .export_stream import streamed_export

bp = Blueprint("admin", __name__, url_prefix="/admin")
bp.before_request(require_admin)


def _status_arg() -> Status | None:
    raw = query_arg("status")
    if not raw:
        return None
    try:
        return Status(raw)
    except ValueError:
        allowed = ", ".join(s.value for s in Status)
        raise AppError(
            "invalid_status", f"status must be one of: {allowed}.", 400, field="status"
        ) from None


@bp.get("/subscribers")
def list_subscribers() -> Response:
    """Subscribers, newest first, filtered by status and a search on address or name."""
    page, per_page = page_args()
    query = select(Subscriber)
    status = _status_arg()
    if status is not None:
        query = query.where(Subscriber.status == status)
    search = query_arg("q").strip()[:320]
    if search:
        # What was typed, matched literally: "_" and "%" are no wildcards here.
        typed = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{typed}%"
        query = query.where(
            or_(
                Subscriber.email.like(pattern, escape="\\"),
                func.lower(Subscriber.name).like(pattern, escape="\\"),
            )
        )
    total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    items = db.session.scalars(
        query.order_by(Subscriber.created_at.desc(), Subscriber.id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return jsonify(items=[s.to_dict() for s in items], total=total, page=page, per_page=per_page)


def _subscriber(normalized: str | None) -> Subscriber | None:
    if normalized is None:
        return None
    return db.session.scalars(
        select(Subscriber).where(Subscriber.email == normalized)
    ).one_or_none()


def _find(email: str) -> Subscriber:
    subscriber = _subscriber(lookup_form(email))
    if subscriber is None:
        raise AppError("not_found", "No subscriber has that address.", 404)
    return subscriber


@bp.get("/subscribers/export.csv")
def export_subscribers() -> Response:
    """Every subscriber as CSV, streamed.

    Its first rows are read before the response starts, so a database that
    does not answer is the usual 503; one that fails later drops the
    connection, and the client sees an incomplete file (``streamed_export``).
    """
    return Response(
        stream_with_context(streamed_export(db.session.session_factory)),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=subscribers.csv"},
    )


def _whole_body() -> IO[bytes]:
    """A body sent without a length (chunked), read to its end before any row is imported.

    Its size shows only as it is read: an import streaming it would have
    committed its first chunks before finding it too large (413). Past a few
    megabytes the copy goes to a temporary file.
    """
    spool = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (returned)
    try:
        shutil.copyfileobj(request.stream, spool)  # RequestEntityTooLarge past IMPORT_MAX_BYTES
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


@bp.post("/subscribers/import")
def import_subscribers() -> Response:
    """Import a CSV (``text/csv`` body or multipart ``file``) with an ``email`` column."""
    request.max_content_length = current_app.config["IMPORT_MAX_BYTES"]
    confirmed = bool_query_arg("confirmed")
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise AppError(
                "missing_file", "Send the CSV as the multipart field 'file'.", 400, field="file"
            )
        stream = upload.stream
    elif request.mimetype in ("text/csv", "text/plain", "application/csv"):
        stream = request.stream if request.content_length is not None else _whole_body()
    else:
        raise AppError(
            "unsupported_media_type",
            "Send the CSV as a text/csv body or as the multipart field 'file'.",
            415,
        )
    try:
        report = import_csv(db.session, stream, confirmed)
    except ImportFormatError as exc:
        db.session.rollback()
        raise AppError("invalid_csv", str(exc), 400) from None
    finally:
        stream.close()
    return jsonify(report.to_dict())


@bp.get("/subscribers/<email:email>")
def get_subscriber(email: str) -> Response:
    """One subscriber with its whole consent history."""
    subscriber = _find(email)
    return jsonify({**subscriber.to_dict(), "consent": [e.to_dict() for e in subscriber.events]})


_NOTHING_HELD = "Nothing is held about that address."


@bp.get("/subscribers/<email:email>/export")
def export_personal_data(email: str) -> Response:
    """Everything held about the address, as JSON (subject access request).

    An address that never subscribed may still have been sent a digest's
    test copy, and have provider events about it: those are shown too.
    """
    normalized = lookup_form(email)
    held = personal_data(db.session, normalized, _subscriber(normalized)) if normalized else None
    if not held or not (held["subscriber"] or held["deliveries"] or held["provider_events"]):
        raise AppError("not_found", _NOTHING_HELD, 404)
    return jsonify(held)


@bp.delete("/subscribers/<email:email>")
def erase_subscriber(email: str) -> Response:
    """Erase every piece of personal data held about the address (GDPR)."""
    normalized = lookup_form(email)
    if normalized is None or not erase(db.session, normalized):
        raise AppError("not_found", _NOTHING_HELD, 404)
    forget_mail_to(normalized)  # the outbox: the files it wrote to the address
    erased = Response(status=204)
    del erased.headers["Content-Type"]  # no body, so no type (Flask gives every answer one)
    return erased


@bp.get("/stats")
def stats() -> Response:
    """Subscribers, deliveries and digests by status, the backlog and dispatch health."""
    by_status = dict(
        db.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        ).all()
    )
    deliveries = dict(
        db.session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
    )
    health = reported_dispatch_health()
    return jsonify(
        subscribers={s.value: by_status.get(s, 0) for s in Status},
        deliveries={s.value: deliveries.get(s, 0) for s in DeliveryStatus},
        # Every status: a digest going out (or failed) showed nowhere here.
        digests=digests_by_status(db.session),
        backlog=ledger.backlog(db.session),
        dispatch={
            "paused": health.paused,
            "last_error": health.last_error,
            "last_pass_at": health.last_pass_at,
        },
    )
