"""A database that fails, or a ``DATABASE_URL`` that cannot be used: one line, never a traceback.

Real runs of ``flask --app wsgi``, and of what gunicorn's workers and Celery's
do to build the app. Each used to end in a traceback of 40 to 150 lines:
Flask-Migrate's own ``db`` group let a database error through, and SQLAlchemy
refused the URL as the app was built (a missing driver then also hid every
command: "No such command").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "pa55-not-to-be-shown"  # in the URLs given: the output must never show it


def _run(args: list[str], database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``args`` run from the project folder, on ``database_url``, with a secret key set."""
    env = {k: v for k, v in os.environ.items() if k != "FLASK_DEBUG"}
    env.update(DATABASE_URL=database_url, SECRET_KEY="test-secret-key")
    env["OUTBOX_DIR"] = str(tmp_path / "outbox")
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _flask(*args: str, database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``flask --app wsgi ARGS`` in a fresh process."""
    return _run([sys.executable, "-m", "flask", "--app", "wsgi", *args], database_url, tmp_path)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the process printed, on either stream; no traceback, no password."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output and PASSWORD not in output, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


@pytest.fixture
def not_a_database(tmp_path: Path) -> str:
    """A SQLite URL whose file holds text, not a database."""
    file = tmp_path / "not-a-database.db"
    file.write_text("not a database, only text long enough for SQLite to read a header\n" * 4)
    return f"sqlite:///{file}"


@pytest.mark.parametrize("command", [["upgrade"], ["downgrade"], ["current"], ["stamp", "head"]])
def test_a_migration_command_on_a_database_that_refuses_ends_in_one_line(command, tmp_path):
    url = f"postgresql://newsletter:{PASSWORD}@127.0.0.1:{free_port()}/newsletter"
    result = _flask("db", *command, database_url=url, tmp_path=tmp_path)
    assert result.returncode == 1
    line = _one_line(result)
    assert line.startswith("Error: The database failed: OperationalError: ")
    assert "refused" in line


@pytest.mark.parametrize("command", [["upgrade"], ["current"]])
def test_a_migration_command_on_a_file_that_is_no_database_ends_in_one_line(
    command, not_a_database, tmp_path
):
    result = _flask("db", *command, database_url=not_a_database, tmp_path=tmp_path)
    assert result.returncode == 1
    # What the database said, not our commands' "run db upgrade first": upgrade just failed.
    assert _one_line(result) == "Error: The database failed: DatabaseError: file is not a database"


def test_the_migration_commands_do_as_before_when_the_database_answers(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    upgraded = _flask("db", "upgrade", database_url=url, tmp_path=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade" in upgraded.stderr
    current = _flask("db", "current", database_url=url, tmp_path=tmp_path)
    assert current.returncode == 0, current.stderr
    assert current.stdout.strip().endswith("(head)")
    listed = _flask("db", "--help", database_url=url, tmp_path=tmp_path).stdout
    assert all(f"  {name} " in listed for name in ("upgrade", "downgrade", "current", "stamp"))


UNUSABLE_URLS = [
    ("garbage", "DATABASE_URL is not a URL SQLAlchemy can read"),
    (f"postgres ql://newsletter:{PASSWORD}@db/x", "DATABASE_URL is not a URL SQLAlchemy can read"),
    (f"postgresql://newsletter:{PASSWORD}@db:port/x", "DATABASE_URL is not a URL SQLAlchemy"),
    (f"nosuchdb://newsletter:{PASSWORD}@db/x", "a database SQLAlchemy does not know"),
    (
        f"mysql://newsletter:{PASSWORD}@localhost/x",
        "DATABASE_URL needs the mysql+mysqldb driver, which is not installed "
        "(No module named 'MySQLdb')",
    ),
]


@pytest.mark.parametrize(("url", "said"), UNUSABLE_URLS)
def test_a_database_url_that_cannot_be_used_stops_flask_in_one_line(url, said, tmp_path):
    result = _flask("subscribers", "export", database_url=url, tmp_path=tmp_path)
    assert result.returncode == 1
    line = _one_line(result)
    assert line.startswith("newsletter: cannot start: ") and said in line


def test_a_missing_driver_stops_db_upgrade_too_not_no_such_command(tmp_path):
    url, said = UNUSABLE_URLS[-1]
    result = _flask("db", "upgrade", database_url=url, tmp_path=tmp_path)
    assert result.returncode == 1
    assert said in _one_line(result)


def test_a_database_url_that_cannot_be_used_stops_a_gunicorn_worker_in_one_line(tmp_path):
    # What each worker (and dispatcher process) does to load ``wsgi:app``.
    load = "from gunicorn.util import import_app; import_app('wsgi:app')"
    result = _run([sys.executable, "-c", load], "garbage", tmp_path)
    assert result.returncode == 1
    assert "cannot start: DATABASE_URL is not a URL SQLAlchemy can read" in _one_line(result)


def test_a_database_url_that_cannot_be_used_is_one_logged_line_in_a_celery_worker(tmp_path):
    boot = "from newsletter import tasks; tasks._build_app_before_the_first_task()"
    url = UNUSABLE_URLS[-1][0]
    result = _run([sys.executable, "-c", boot], url, tmp_path)
    assert result.returncode == 0  # the worker lives on; each task raises the same error
    line = _one_line(result)
    assert "this worker cannot build its app: DATABASE_URL needs the mysql+mysqldb driver" in line


def test_an_export_to_a_full_disk_ends_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert _flask("db", "upgrade", database_url=url, tmp_path=tmp_path).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "FLASK_DEBUG"}
    env.update(DATABASE_URL=url, SECRET_KEY="test-secret-key", OUTBOX_DIR=str(tmp_path))
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "subscribers", "export"],
            cwd=ROOT,
            env=env,
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr.strip() == "Error: could not write the export: No space left on device"
