"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app`` (command-line flags win).

- Metrics: gunicorn's workers share counters through PROMETHEUS_MULTIPROC_DIR
  (a fresh temporary folder when not set); a dead worker's gauges are dropped.
- Shutdown: on SIGTERM each worker stops taking requests and finishes those in
  flight (with DISPATCH_PROCESS=false, its dispatcher thread also finishes
  and records its batch); then the dispatcher process finishes and records
  theirs. Each step is bounded by graceful_timeout (keep it above one
  batch's send time): allow twice that before a SIGKILL.
- Logs: the access log carries the request id (``rid=``); LOG_FORMAT=json turns
  the workers' lines into JSON (see newsletter/logs.py).
- Dispatch: with DISPATCH_PROCESS=true (the default) and no CELERY_BROKER_URL,
  the master starts DISPATCH_PROCESSES dispatcher processes (one by default;
  newsletter/delivery/dispatch_process.py), then DISPATCH_DIGEST_PROCESSES
  more that send digests only (by default one on PostgreSQL, unless
  SEND_RATE is set: config.digest_processes), restarts each
  that dies and stops them last; the workers then run no dispatcher thread.
  DISPATCH_PROCESS=false puts a dispatcher thread back in each worker.
  A reload (SIGHUP) stops them once their batches in flight are recorded
  and starts them again, with the code and settings the new workers get.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gunicorn.util import parse_address

# A reload (SIGHUP) runs this file again, but Python keeps the config module it
# imported the first time: read config.py again too, or the master (and the
# workers it forks) would count dispatchers by the old rules while the new
# dispatcher processes, fresh interpreters, follow the new ones.
if "config" in sys.modules:
    importlib.reload(sys.modules["config"])
from config import (
    ConfigError,
    count_setting,
    dispatcher_process_count,
    from_env,
    on_postgresql,
    sends_elsewhere,
)

# Set at load time, before anything imports prometheus_client: a module imported
# before the variable exists would stay in single-process mode in every worker.
# (Only when unset: a SIGHUP reload runs this file again.)
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="newsletter-metrics-")
    # Made here, so removed at exit (on_exit); a folder the operator named stays.
    os.environ["NEWSLETTER_OWN_METRICS_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


# Gunicorn prints a traceback for any exception in this file; a SystemExit is one line,
# said as wsgi.py says the app's settings are wrong.
def _refuse(problem: str) -> SystemExit:
    return SystemExit(f"newsletter: cannot start: {problem}")


def _count(name: str, default: int, minimum: int) -> int:
    """A whole number from the environment, at least ``minimum``; unset or empty, ``default``."""
    try:
        return count_setting(os.environ, name, default, minimum)
    except ConfigError as exc:
        raise _refuse(str(exc)) from None


def _bind(name: str, default: str) -> str:
    """``host:port`` (or gunicorn's ``unix:PATH``, ``fd://N``), read as gunicorn will read it.

    A port past 65535 passed gunicorn's parser and ended in an OverflowError
    as it bound the socket.
    """
    raw = os.environ.get(name, "").strip() or default
    try:
        address = parse_address(raw)
    except RuntimeError:  # a port or descriptor that is no number
        address = None
    if address is None or (isinstance(address, tuple) and not 0 <= address[1] <= 65535):
        raise _refuse(f"{name} must look like 0.0.0.0:8000 (host:port) or unix:PATH, not {raw!r}")
    return raw


bind = _bind("BIND", "0.0.0.0:8000")  # in a container, behind a proxy
# At least one each: no worker at all started a master that answered nothing, and
# logged nothing either.
workers = _count("WEB_CONCURRENCY", 2, minimum=1)
threads = _count("WEB_THREADS", 4, minimum=1)
# Connections a worker holds at most: past it, gthread stops accepting (another
# worker takes the next), and it closes a connection after its answer while all
# but `threads` of them wait, kept alive. Left at gunicorn's 1,000, clients that
# keep connections open (wrk, a proxy with upstream keep-alive) can all land on
# whichever worker accepted first while the others sit idle: with 16 connections
# the signup bench saw it in 5 runs of 12 (bench/RESULTS.md). Three a thread
# shares 16 between two workers of 4 threads and leaves room for 8 more (a
# health probe, a scrape) before a new connection waits for one to close.
CONNECTIONS_PER_THREAD = 3
_connections_setting = os.environ.get("WEB_WORKER_CONNECTIONS", "").strip()
# At least one: at 0 a worker accepts no connection, and every request waits.
worker_connections = _count("WEB_WORKER_CONNECTIONS", CONNECTIONS_PER_THREAD * threads, 1)
# At least one second: at 0 the master kills the workers and the dispatcher processes at
# once, with their requests and batches in flight.
graceful_timeout = _count("GRACEFUL_TIMEOUT", 30, minimum=1)
# The control socket lives at one path per user ($HOME/.gunicorn): several
# instances would fight over it, and a container has no use for it.
control_socket_disable = True
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


def _size_connections(server) -> None:
    """Set the connection cap from the threads gunicorn will really run, unless it was given.

    ``--threads`` (or GUNICORN_CMD_ARGS) is read after this file, so the cap
    above follows WEB_THREADS only; a cap given (the setting, or
    ``--worker-connections``) is left as given.
    """
    flags = [*sys.argv[1:], *shlex.split(os.environ.get("GUNICORN_CMD_ARGS", ""))]
    given = _connections_setting or any(
        flag.split("=", 1)[0] == "--worker-connections" for flag in flags
    )
    if not given:
        server.cfg.set("worker_connections", CONNECTIONS_PER_THREAD * server.cfg.threads)


def _warn_of_limits_counted_per_worker(server) -> None:
    """Say so at start when each worker counts the signup limits alone (``memory://``)."""
    try:
        settings = from_env(os.environ)
    except ConfigError:
        return  # wsgi.py says what is wrong as the workers start
    workers = server.cfg.workers
    memory = settings["RATELIMIT_STORAGE_URI"].startswith("memory://")
    if settings["RATELIMIT_ENABLED"] and memory and workers > 1:
        server.log.warning(
            "RATELIMIT_STORAGE_URL is memory://: each of the %d workers counts signups on its "
            "own, so a client may make up to %d times RATELIMIT_SUBSCRIBE; set "
            "RATELIMIT_STORAGE_URL=redis://... to share the count",
            workers,
            workers,
        )


def on_starting(server) -> None:
    """Empty the metrics folder (a previous run's files would be counted again); size the cap.

    Also warns when the rate limits would be counted per worker.
    """
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _size_connections(server)
    _warn_of_limits_counted_per_worker(server)


def on_reload(server) -> None:
    """A SIGHUP read this file again: size the cap, and start the dispatchers anew.

    Before gunicorn starts the new workers, the old dispatcher processes
    finish and record their batches in flight (the master waits, up to
    graceful_timeout), then new ones start: the code on disk, and the
    settings the new workers get (gunicorn's ``--env`` or ``raw_env``).
    What falls due meanwhile waits in the ledger.
    """
    _size_connections(server)
    stopping = getattr(server, "newsletter_dispatchers", [])
    server.newsletter_dispatchers = []
    if stopping:
        _stop(stopping, float(server.cfg.graceful_timeout))
        server.log.info("dispatcher processes stopped for the reload")
    _start_dispatchers(server)


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the shared metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker) -> None:
    """The worker has built its app: warm it up, then freeze its heap out of the collector's way."""
    from newsletter.startup import finish_startup

    finish_startup(getattr(worker, "wsgi", None))


def worker_exit(server, worker) -> None:
    """Let the in-process dispatcher record its batch in flight before the worker exits."""
    from newsletter.delivery.dispatcher import stop_background_dispatchers

    stop_background_dispatchers(timeout=max(1.0, server.cfg.graceful_timeout - 2.0))


class _DispatcherProcess:
    """A dispatcher process: started by the master, restarted if it dies, stopped last.

    Spawned with ``posix_spawn``, not ``subprocess``: ``subprocess`` waits on a
    pipe for the exec, and a worker the master forks meanwhile inherits that
    pipe and holds it open for its whole life. Started the first time before
    any worker exists; a thread waits on it and starts another if it dies.
    """

    def __init__(self, server, index: int) -> None:
        self.server = server
        self.argv = [sys.executable, "-m", "newsletter.delivery.dispatch_process"]
        self.argv += [server.app.app_uri, str(index)]
        self.stopping = threading.Event()
        self.pid = self._spawn()
        self.thread = threading.Thread(target=self._supervise, name="dispatcher", daemon=True)
        self.thread.start()

    def _spawn(self) -> int:
        # Its own process group: a Ctrl-C or a service manager's signal to gunicorn's
        # group reaches the master, which stops it last, not the dispatcher directly.
        pid = os.posix_spawn(sys.executable, self.argv, os.environ, setpgroup=0)
        self.server.log.info("dispatcher process started (index %s, pid %s)", self.argv[-1], pid)
        return pid

    def _supervise(self) -> None:
        pause = 1.0
        while True:
            started = time.monotonic()
            # ChildProcessError: the master's own reaper got to it first; it has exited.
            with contextlib.suppress(ChildProcessError):
                os.waitpid(self.pid, 0)
            # One that keeps dying at start is restarted less and less often.
            pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, 60.0)
            if self.stopping.wait(pause):
                return
            index = self.argv[-1]
            self.server.log.warning("dispatcher process exited (index %s); starting another", index)
            self.pid = self._spawn()
            if self.stopping.is_set():  # _stop came meanwhile, and signalled the one that died
                self.signal(signal.SIGTERM)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the process now running (none once it has exited)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)


def _stop(dispatchers: list[_DispatcherProcess], timeout: float) -> None:
    """SIGTERM to all at once: each finishes its batch in flight; killed past ``timeout``."""
    for dispatcher in dispatchers:
        dispatcher.stopping.set()  # no restart from now on
        dispatcher.signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for dispatcher in dispatchers:
        dispatcher.thread.join(max(0.0, deadline - time.monotonic()))
        if dispatcher.thread.is_alive():
            dispatcher.signal(signal.SIGKILL)
            dispatcher.thread.join(timeout)


def dispatching_settings() -> dict[str, Any] | None:
    """The settings, when this host's dispatcher processes send; else None.

    Read from the environment the workers will get (gunicorn's ``--env``
    included: read as gunicorn starts or reloads, not as it loads this
    file), with the app's own parser. None with DISPATCH_PROCESS=false,
    when Celery or cron sends (sends_elsewhere), or with settings the app
    refuses (wsgi.py reports them, in one line, as the workers start).
    """
    try:
        settings = from_env(os.environ)
    except ConfigError:
        return None
    return settings if settings["DISPATCH_PROCESS"] and not sends_elsewhere(settings) else None


def _start_dispatchers(server) -> None:
    """Start the dispatcher processes the settings ask for, before any worker is forked."""
    settings = dispatching_settings()
    if settings is None:
        # DISPATCH_HEALTH_FILE tells the workers "a dispatcher process sends for you":
        # without one, each worker runs its own dispatcher thread again.
        for handed in ("DISPATCH_HEALTH_FILE", "DISPATCH_HEALTH_FILES"):
            os.environ.pop(handed, None)
        server.newsletter_dispatchers = []
        _remove_dispatch_folder(server)  # a reload that turned them off: no file to keep
        return
    # Where they tell the workers how sending goes; set before any worker is forked,
    # it is also what keeps their dispatcher threads from starting.
    if not os.environ.get("DISPATCH_HEALTH_FILE"):
        folder = tempfile.mkdtemp(prefix="newsletter-dispatch-")
        server.newsletter_dispatch_folder = folder
        os.environ["DISPATCH_HEALTH_FILE"] = os.path.join(folder, "health.json")
    # Kept on the arbiter, not in this module: a SIGHUP reload re-runs this file.
    # Past the first DISPATCH_PROCESSES, each sends digests only (dispatch_process.claimed_kind).
    count = dispatcher_process_count(settings, on_postgresql(settings))
    # ...and how many: the workers read every file written, whatever their own reading
    # of the settings (config.running_dispatcher_processes); the processes inherit it too.
    os.environ["DISPATCH_HEALTH_FILES"] = str(count)
    server.newsletter_dispatchers = [_DispatcherProcess(server, index) for index in range(count)]


def when_ready(server) -> None:
    """Start the dispatcher processes before the workers (DISPATCH_PROCESS=true)."""
    _start_dispatchers(server)


def _remove_dispatch_folder(server) -> None:
    """Remove the folder the dispatcher processes' health files went to, if this master made one."""
    folder = getattr(server, "newsletter_dispatch_folder", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        server.newsletter_dispatch_folder = None


def on_exit(server) -> None:
    """Stop the dispatcher processes after the workers, so each records its batch in flight.

    Then remove the metrics folder this file made (every run made a new one).
    """
    _stop(getattr(server, "newsletter_dispatchers", []), float(server.cfg.graceful_timeout))
    _remove_dispatch_folder(server)
    own = os.environ.get("NEWSLETTER_OWN_METRICS_DIR")
    if own and own == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(own, ignore_errors=True)
