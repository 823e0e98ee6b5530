"""Logs: a request id on every answer and every line, JSON on demand, addresses masked."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from newsletter.logs import JsonFormatter, RequestIdFilter, TextFormatter

ROOT = Path(__file__).resolve().parents[1]


def test_a_sane_request_id_is_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "lb-7f3a.2:x_y"})
    assert response.headers["X-Request-ID"] == "lb-7f3a.2:x_y"


@pytest.mark.parametrize("given", ["", "has space", 'q"uote', "x" * 200, "a@example.com"])
def test_an_odd_request_id_is_replaced_by_a_new_one(client, given):
    response = client.get("/healthz", headers={"X-Request-ID": given})
    generated = response.headers["X-Request-ID"]
    assert generated != given and len(generated) == 32 and int(generated, 16) >= 0


def test_every_request_gets_its_own_id(client):
    ids = {client.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("newsletter.x", logging.INFO, __file__, 1, message, None, None)
    record.__dict__.update(extra)
    return record


def test_text_lines_carry_the_request_id_and_stay_on_one_line():
    line = TextFormatter().format(_record("two\nlines", request_id="abc"))
    assert "[abc]: two\\nlines" in line and "\n" not in line


def test_gunicorn_access_lines_take_the_id_from_the_response_header():
    record = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, "%(s)s", None, None)
    record.args = {"{x-request-id}o": "rid-1", "s": "200"}
    assert RequestIdFilter().filter(record) and record.request_id == "rid-1"


def test_json_lines_mask_addresses_in_the_message_and_the_traceback():
    try:
        raise ValueError("bad address carol@example.com")
    except ValueError:
        record = _record("sent to carol@example.com", request_id="r1", exc_info=sys.exc_info())
    from newsletter.security import MaskingFilter

    MaskingFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "sent to c***@example.com"
    assert entry["request_id"] == "r1" and entry["level"] == "INFO"
    assert "carol@" not in entry["exception"] and "ValueError" in entry["exception"]


SCRIPT = """
import logging
from newsletter import create_app
app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
@app.get("/log")
def log_something():
    logging.getLogger("newsletter.test").warning("signup from dave@example.com")
    return "ok"
response = app.test_client().get("/log", headers={"X-Request-ID": "req-42"})
print(response.headers["X-Request-ID"])
"""


def test_json_format_writes_one_masked_json_object_per_line_with_the_request_id():
    env = {**os.environ, "LOG_FORMAT": "json", "SECRET_KEY": "k"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "req-42"
    entries = [json.loads(line) for line in result.stderr.strip().splitlines()]
    logged = [e for e in entries if e["logger"] == "newsletter.test"]
    assert len(logged) == 1
    assert logged[0]["message"] == "signup from d***@example.com"
    assert logged[0]["request_id"] == "req-42"


def test_an_unknown_log_format_stops_start_up():
    from config import ConfigError, from_env

    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        from_env({"LOG_FORMAT": "xml"})
    assert from_env({"LOG_FORMAT": "JSON"})["LOG_FORMAT"] == "json"


def test_text_lines_mask_the_traceback_too():
    try:
        raise ValueError("bad grace@example.com at /confirm/SECRETTOKEN")
    except ValueError:
        record = _record("failed", request_id="r2", exc_info=sys.exc_info())
    line = TextFormatter().format(record)
    assert "grace@" not in line and "SECRETTOKEN" not in line and "g***@example.com" in line
