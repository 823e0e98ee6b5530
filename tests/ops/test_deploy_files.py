"""The deployment files: the Dockerfile passes hadolint; docker-compose.yml is whole.

``docker compose config`` needs an engine, which CI lacks, so the compose file's
structure is checked here with PyYAML.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.fresh_python import printed

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def services() -> dict:
    """The compose file's services."""
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]


def test_dockerfile_passes_hadolint():
    result = subprocess.run([ROOT / "scripts" / "lint-docker"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_starts_gunicorn_with_our_config():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert "gunicorn.conf.py" in dockerfile.split("COPY", 2)[2]  # copied into the image
    assert dockerfile.rstrip().endswith('CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]')


def test_compose_has_every_process_and_backing_service(services):
    assert set(services) == {"web", "worker", "scheduler", "migrate", "db", "redis"}
    assert services["db"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    commands = {name: " ".join(services[name]["command"]) for name in services if name != "db"}
    assert commands["web"] == "gunicorn -c gunicorn.conf.py wsgi:app"
    assert commands["worker"].startswith("celery -A newsletter.tasks worker")
    assert commands["scheduler"].startswith("celery -A newsletter.tasks beat")
    assert commands["migrate"] == "flask --app wsgi db upgrade"


def test_app_processes_share_one_configuration_and_wait_for_the_schema(services):
    for name in ("web", "worker", "scheduler"):
        service = services[name]
        assert service["build"] == "." and service["image"] == services["migrate"]["image"]
        env = service["environment"]
        assert (
            env["DATABASE_URL"].startswith("postgresql+psycopg://")
            and "@db:5432/" in env["DATABASE_URL"]
        )
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["db"] == {"condition": "service_healthy"}
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert set(services["migrate"]["depends_on"]) == {"db"}  # never on itself
    assert services["migrate"]["restart"] == "no"


def test_every_app_process_gets_what_env_holds(services):
    # Compose reads .env only to fill ${...} in the file: the README's POSTMARK_SERVER_TOKEN
    # (or CORS_ORIGINS, WEBHOOK_BASIC_AUTH...) never reached a container, and migrate
    # stopped on "EMAIL_PROVIDER=postmark needs POSTMARK_SERVER_TOKEN".
    for name in ("migrate", "web", "worker", "scheduler"):
        assert {"path": ".env", "required": False} in services[name]["env_file"], name


def test_worker_metrics_are_on_the_port_the_readme_scrapes_and_not_published(services):
    worker = services["worker"]
    host, _, port = worker["environment"]["WORKER_METRICS_BIND"].rpartition(":")
    # Every interface of its container, but no port published: the compose network only.
    assert host == "0.0.0.0" and "ports" not in worker  # noqa: S104
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'targets: ["worker:{port}"]' in readme


def test_long_running_services_have_healthchecks(services):
    for name in ("db", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    # SIGTERM, then SIGKILL after this: it must outlast gunicorn's graceful timeout.
    assert int(services["web"]["stop_grace_period"].rstrip("s")) > 30


def _printed_after_the_gunicorn_config(program: str, tmp_path: Path, **settings: str) -> str:
    """What ``program`` prints, run in a fresh interpreter beside gunicorn.conf.py."""
    env = {
        "SECRET_KEY": "x",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),  # not made by the config
        **settings,
    }
    return printed(program, env=env)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({}, True),  # the default: one dispatcher process
        ({"DISPATCH_PROCESS": "false"}, False),  # a thread in each worker
        ({"DISPATCH_IN_PROCESS": "false"}, False),  # cron sends: nothing else may
        ({"CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"}, False),  # Celery sends
    ],
)
def test_gunicorn_config_starts_a_dispatcher_process_only_when_this_host_sends(
    settings: dict[str, str], expected: bool, tmp_path: Path
) -> None:
    settings_then = "runpy.run_path('gunicorn.conf.py')['dispatching_settings']()"
    program = f"import runpy; print({settings_then} is not None)"
    assert _printed_after_the_gunicorn_config(program, tmp_path, **settings) == str(expected)


@pytest.mark.parametrize(
    ("settings", "workers", "warned"),
    [
        ({}, 2, True),  # the defaults: two workers, each counting on its own
        ({}, 1, False),
        ({"RATELIMIT_STORAGE_URL": "redis://127.0.0.1:6379/13"}, 2, False),
        ({"RATELIMIT_ENABLED": "false"}, 2, False),
    ],
)
def test_gunicorn_warns_when_each_worker_would_count_the_signup_limits_alone(
    settings: dict[str, str], workers: int, warned: bool, tmp_path: Path
) -> None:
    program = (
        "import runpy, types\n"
        "said = []\n"
        f"cfg = types.SimpleNamespace(workers={workers})\n"
        "log = types.SimpleNamespace(warning=lambda text, *args: said.append(text % args))\n"
        "hook = runpy.run_path('gunicorn.conf.py')['_warn_of_limits_counted_per_worker']\n"
        "hook(types.SimpleNamespace(cfg=cfg, log=log))\n"
        "print(' | '.join(said))\n"
    )
    said = _printed_after_the_gunicorn_config(program, tmp_path, **settings)
    assert ("each of the 2 workers counts signups on its own" in said) is warned, said


def test_a_reload_of_the_gunicorn_config_reads_config_py_again(tmp_path: Path) -> None:
    """A SIGHUP runs gunicorn.conf.py again: the master must not keep the old config rules."""
    program = (
        "import runpy, sys, config\n"
        "config.digest_processes = None  # a rule that changed on disk since the first load\n"
        "runpy.run_path('gunicorn.conf.py')  # as gunicorn's reload does\n"
        "print(callable(sys.modules['config'].digest_processes))\n"
    )
    assert _printed_after_the_gunicorn_config(program, tmp_path) == "True"


def test_a_reload_that_turns_the_dispatcher_processes_off_removes_their_folder(
    tmp_path: Path,
) -> None:
    """Process mode, then threads, then processes again: one health folder left, none at exit.

    And what the master hands its workers (the file, how many) goes with it.
    """
    program = (
        "import glob, os, runpy, tempfile, types\n"
        "conf = runpy.run_path('gunicorn.conf.py')['_start_dispatchers'].__globals__\n"
        "conf['_DispatcherProcess'] = lambda server, index: index  # start none for real\n"
        "server = types.SimpleNamespace()\n"
        "pattern = os.path.join(tempfile.gettempdir(), 'newsletter-dispatch-*')\n"
        "made = lambda: len(glob.glob(pattern))\n"
        "before = made()\n"
        "conf['_start_dispatchers'](server)\n"
        "handed = os.environ['DISPATCH_HEALTH_FILES']\n"
        "first = made() - before, server.newsletter_dispatchers, handed\n"
        "os.environ['DISPATCH_PROCESS'] = 'false'  # what a reload can be given\n"
        "conf['_start_dispatchers'](server)\n"
        "off = made() - before, {'DISPATCH_HEALTH_FILE', 'DISPATCH_HEALTH_FILES'} & {*os.environ}\n"
        "del os.environ['DISPATCH_PROCESS']\n"
        "conf['_start_dispatchers'](server)\n"
        "again = made() - before\n"
        "conf['_remove_dispatch_folder'](server)  # as on_exit does\n"
        "print(first, off, again, made() - before)\n"
    )
    printed = _printed_after_the_gunicorn_config(program, tmp_path, TMPDIR=str(tmp_path))
    assert printed == "(1, [0], '1') (0, set()) 1 0"


def test_gunicorn_removes_at_exit_the_metrics_folder_it_made(database_uri, tmp_path: Path) -> None:
    """Each run made a fresh folder of counter files and left it behind in /tmp."""
    from tests.ops.gunicorn_master import gunicorn_master

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    made = lambda: sorted(temporary.glob("newsletter-metrics-*"))  # noqa: E731
    with gunicorn_master(
        database_uri, tmp_path, "wsgi:app", PROMETHEUS_MULTIPROC_DIR=None, TMPDIR=str(temporary)
    ) as (master, _base, _log):
        assert len(made()) == 1  # the run's own folder, in use
    assert master.returncode == 0
    assert made() == []
