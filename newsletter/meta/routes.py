"""``/healthz`` (liveness), ``/readyz`` (readiness) and ``/openapi.json``."""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, current_app, jsonify, request

from ..delivery.health import reported_dispatch_health
from .probes import broker_answers, database_answers, schema_behind

log = logging.getLogger(__name__)

bp = Blueprint("meta", __name__)
OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi.yaml"


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when the database answers, else 503; says if sending is paused.

    Not why: anyone may ask, and the provider's answer can name a private
    sender address or account; ``/admin/stats`` has it.
    """
    if not database_answers():
        return jsonify(status="unavailable", database="down"), 503
    health = reported_dispatch_health()
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    if health.paused:
        body["dispatch"] = {"paused": True, "details": "/admin/stats"}
    return jsonify(body), 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database and, if configured, the broker answer; else 503 naming the part."""
    parts = {"database": "ok" if database_answers() else "down"}
    if parts["database"] == "ok" and (behind := schema_behind()) is not None:
        log.warning("not ready: the schema is at %s, behind the code: run db upgrade", behind)
        parts["database"] = "schema_behind"  # flask db upgrade
    broker_url = current_app.config["CELERY_BROKER_URL"]
    if broker_url:
        ready = broker_answers(broker_url, current_app.config["READINESS_TIMEOUT"])
        parts["broker"] = "ok" if ready else "down"
    ok = all(state == "ok" for state in parts.values())
    return jsonify(status="ok" if ok else "unavailable", **parts), 200 if ok else 503


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, read once from ``openapi.yaml``."""
    return yaml.safe_load(OPENAPI_FILE.read_text(encoding="utf-8"))


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of every JSON endpoint, its server where the service is mounted."""
    # Under a path prefix (SCRIPT_NAME=/news), "/" sent every tool to the host's root.
    return jsonify({**openapi_document(), "servers": [{"url": request.script_root or "/"}]})
