"""``/healthz`` and ``/openapi.json``."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from ..delivery.dispatcher import dispatch_health
from ..extensions import db

bp = Blueprint("meta", __name__)
OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database answers, else 503; says if sending is paused."""
    try:
        db.session.execute(text("SELECT 1"))
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="unavailable", database="down"), 503
    finally:
        db.session.remove()
    health = dispatch_health()
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    if health.paused:
        body["dispatch"] = {"paused": True, "error": health.last_error}
    return jsonify(body), 200


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, read once from ``openapi.yaml``."""
    return yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of every JSON endpoint."""
    return jsonify(openapi_document())
