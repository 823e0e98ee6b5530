"""The signup bench's floor: a bare Flask app that only inserts the posted address.

    FLOOR_DATABASE_URL=sqlite:///floor.db python bench/floor_app.py   # creates the table
    FLOOR_DATABASE_URL=sqlite:///floor.db DISPATCH_PROCESS=false \
      gunicorn -c gunicorn.conf.py --pythonpath bench floor_app:app

``POST /subscribe`` with a JSON body ``{"email": ...}`` runs one
``INSERT INTO floor_signups (email) VALUES (...) ON CONFLICT DO NOTHING`` and
answers ``202 {"status": "pending"}``, like the service. Nothing else: no
validation, no lock, no consent events, no delivery row, no metrics. It uses
the same SQLAlchemy pool defaults and, on SQLite, the same pragmas as the
service, so the difference measured is the service's own work per signup.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, jsonify, request
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite

URL = os.environ["FLOOR_DATABASE_URL"]
engine = create_engine(URL, pool_pre_ping=True)
metadata = MetaData()
floor_signups = Table(
    "floor_signups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
)


@event.listens_for(engine, "connect")
def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """The service's SQLite pragmas (newsletter/__init__.py), for a like-for-like floor."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


_insert = (postgresql if engine.dialect.name == "postgresql" else sqlite).insert
STATEMENT = _insert(floor_signups).on_conflict_do_nothing(index_elements=["email"])

app = Flask(__name__)


@app.post("/subscribe")
def subscribe() -> Any:
    email = (request.get_json(silent=True) or {}).get("email")
    if not isinstance(email, str) or not email:
        return jsonify({"error": "invalid_email"}), 422
    with engine.begin() as conn:
        conn.execute(STATEMENT, {"email": email})
    return jsonify({"status": "pending"}), 202


@app.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


if __name__ == "__main__":
    metadata.create_all(engine)  # once, before the workers start (they would race on it)
