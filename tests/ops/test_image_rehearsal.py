"""The image without Docker: what the Dockerfile copies, run as docker-compose.yml runs it.

There is no Docker engine here, so the two files are rehearsed instead: a
folder holding only what the Dockerfile's ``COPY`` lines put in ``/app``
(filtered by ``.dockerignore``), then the compose services' commands and
environment, each started from that folder: migrate, web (gunicorn), worker
(Celery) and scheduler (beat), on this machine's database and Redis in place
of the ``db`` and ``redis`` services. A reader signs up through the web, the
worker sends the confirmation, and every healthcheck command answers
healthy. Not rehearsed: the base image, pip inside it, the non-root user.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import ADMIN_TOKEN, SECRET, is_postgresql
from tests.servers import answers, free_port, redis_or_fail, wait_for

pytestmark = pytest.mark.slow  # gunicorn, a Celery worker and beat, for real

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("TEST_IMAGE_BROKER_URL", "redis://127.0.0.1:6379/11")
LIMITS = "redis://127.0.0.1:6379/12"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::[-?]([^}]*))?\}")


def _ignored(patterns: list[str]):
    """A ``copytree`` filter for ``.dockerignore``'s patterns (``**/`` matches at any depth)."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        relative = Path(folder).relative_to(ROOT)
        skipped = set()
        for name in names:
            path = str(relative / name)
            for pattern in patterns:
                if fnmatch.fnmatch(path, pattern) or (
                    pattern.startswith("**/") and fnmatch.fnmatch(name, pattern[3:])
                ):
                    skipped.add(name)
        return skipped

    return ignore


def build_image_folder(image: Path) -> None:
    """Copy what the Dockerfile's COPY lines copy into ``image`` (its WORKDIR, /app)."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    image.mkdir()
    copied = 0
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not line.startswith("COPY "):
            continue
        *sources, destination = [t for t in shlex.split(line)[1:] if not t.startswith("--")]
        for source in sources:
            target = image / destination
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=_ignored(patterns))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target / source)
            copied += 1
    assert copied >= 5, "the Dockerfile copies the app: requirements, modules, package, migrations"
    (image / "instance").mkdir()  # RUN mkdir -p /app/instance


def compose_environment(service: dict, given: dict[str, str]) -> dict[str, str]:
    """A service's ``environment``, its ``${VAR:-default}`` and ``${VAR:?error}`` filled in.

    ``given`` plays ``.env``: with ``env_file``, all of it too, under ``environment``.
    """

    def fill(value: object) -> str:
        def one(found: re.Match) -> str:
            name, default = found.group(1), found.group(2) or ""
            if name in given:
                return given[name]
            assert ":?" not in found.group(0), f"compose requires {name}"
            return default

        return _INTERPOLATION.sub(one, str(value))

    loaded = dict(given) if any(f["path"] == ".env" for f in service.get("env_file", [])) else {}
    return loaded | {name: fill(value) for name, value in service.get("environment", {}).items()}


def as_run_here(command: list[str]) -> list[str]:
    """A compose command (``gunicorn ...``, ``celery ...``) as this interpreter's module."""
    return [sys.executable, "-m", *command]


def _stop(processes: list[subprocess.Popen]) -> list[int | None]:
    """SIGTERM each, as ``docker compose stop`` does; their exit codes (None: killed)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(60))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
            codes.append(None)
    return codes


def test_the_image_runs_as_compose_runs_it(app, database_uri, tmp_path):
    redis_or_fail(BROKER)
    redis_or_fail(LIMITS)
    image = tmp_path / "app"
    build_image_folder(image)
    assert not list(image.rglob("__pycache__")) and not (image / "tests").exists()

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    web_port, metrics_port = free_port(), free_port()
    # This machine's servers stand in for the db and redis services (the compose
    # file's own URLs name those hosts); a fresh SQLite file when the suite runs there.
    database = database_uri if is_postgresql(database_uri) else f"sqlite:///{tmp_path}/image.db"
    local = {
        "DATABASE_URL": database,
        "CELERY_BROKER_URL": BROKER,
        "RATELIMIT_STORAGE_URL": LIMITS,
    }
    given = {"SECRET_KEY": SECRET, "ADMIN_TOKEN": ADMIN_TOKEN}
    base_env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}

    def env_of(name: str, **extra: str) -> dict[str, str]:
        return {**base_env, **compose_environment(services[name], given), **local, **extra}

    assert env_of("web")["LOG_FORMAT"] == "json" and env_of("web")["EMAIL_PROVIDER"] == "outbox"

    migrate = subprocess.run(
        as_run_here(services["migrate"]["command"]),
        cwd=image,
        env=env_of("migrate"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    scheduler_command = [
        part.replace("=/tmp/", f"={tmp_path}/") for part in services["scheduler"]["command"]
    ]
    started = {
        # gunicorn.conf.py binds BIND (0.0.0.0:8000 in the image); the command is the compose one.
        "web": (services["web"]["command"], env_of("web", BIND=f"127.0.0.1:{web_port}")),
        "worker": (
            services["worker"]["command"],
            env_of("worker", WORKER_METRICS_BIND=f"127.0.0.1:{metrics_port}"),
        ),
        "scheduler": (scheduler_command, env_of("scheduler")),
    }
    processes: dict[str, subprocess.Popen] = {}
    logs = {name: tmp_path / f"{name}.log" for name in started}
    try:
        for name, (command, env) in started.items():
            with logs[name].open("wb") as log:
                processes[name] = subprocess.Popen(
                    as_run_here(command), cwd=image, env=env, stdout=log, stderr=log
                )
        base = f"http://127.0.0.1:{web_port}"

        def web_up() -> bool:
            for name, process in processes.items():
                assert process.poll() is None, f"{name} exited:\n{logs[name].read_text()}"
            return answers(f"{base}/healthz")

        wait_for(web_up, 60, "the web service")

        # Each healthcheck command, as Docker runs it in its container.
        web_check = services["web"]["healthcheck"]["test"]
        assert web_check[:2] == ["CMD", "python"]
        code = web_check[-1].replace("127.0.0.1:8000", f"127.0.0.1:{web_port}")
        readiness = subprocess.run([sys.executable, "-c", code], timeout=30, env=base_env)
        assert readiness.returncode == 0, requests.get(f"{base}/readyz", timeout=5).text
        dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
        [image_check] = re.findall(r'CMD \["python", "-c", (".*")\]', dockerfile)
        code = json.loads(image_check).replace("127.0.0.1:8000", f"127.0.0.1:{web_port}")
        assert subprocess.run([sys.executable, "-c", code], timeout=30).returncode == 0

        kind, shell = services["worker"]["healthcheck"]["test"]
        assert kind == "CMD-SHELL"
        ping = [
            "sh",
            "-c",
            shell.replace("$$", "$").replace("celery ", f"{sys.executable} -m celery "),
        ]
        worker_env = {**started["worker"][1], "HOSTNAME": socket.gethostname()}

        def worker_answers() -> bool:
            run = subprocess.run(ping, cwd=image, env=worker_env, capture_output=True, timeout=60)
            return run.returncode == 0

        wait_for(worker_answers, 90, "the worker's healthcheck")

        # A reader signs up on the web service; the worker sends the confirmation.
        signup = requests.post(f"{base}/subscribe", json={"email": "ann@example.com"}, timeout=10)
        assert signup.status_code == 202
        outbox = image / "instance" / "outbox"  # OUTBOX_DIR's default, in the volume
        wait_for(lambda: outbox.exists() and list(outbox.glob("*.eml")), 60, "the confirmation")
        [eml] = outbox.glob("*.eml")
        confirmation = message_from_bytes(eml.read_bytes(), policy=policy.default)
        assert confirmation["To"] == "ann@example.com"
        text = confirmation.get_body(("plain",)).get_content()
        assert f"{env_of('web')['PUBLIC_URL']}/confirm/" in text  # compose's PUBLIC_URL default
        # The web service sent nothing itself: it queued a task, which the worker ran.
        assert "Task newsletter.dispatch[" in logs["worker"].read_text()
        assert processes["scheduler"].poll() is None, logs["scheduler"].read_text()
        logged = [
            json.loads(line) for line in logs["web"].read_text().splitlines() if line[:1] == "{"
        ]
        assert logged, "LOG_FORMAT=json: the web service logs JSON lines"
    finally:
        codes = _stop(list(processes.values()))
    # docker compose stop: SIGTERM, and each stops cleanly within its grace period.
    assert codes == [0] * len(codes), {name: logs[name].read_text()[-2000:] for name in logs}
