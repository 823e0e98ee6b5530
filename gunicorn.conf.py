"""gunicorn settings: ``gunicorn -c gunicorn.conf.py wsgi:app`` (command-line flags win).

- Metrics: gunicorn's workers share counters through PROMETHEUS_MULTIPROC_DIR
  (a fresh temporary folder when not set); a dead worker's gauges are dropped.
- Shutdown: on SIGTERM each worker stops taking requests, its in-process
  dispatcher finishes the batch in flight and records it, then it exits;
  graceful_timeout bounds the wait (keep it above one batch's send time).
- Logs: the access log carries the request id (``rid=``); LOG_FORMAT=json turns
  the workers' lines into JSON (see newsletter/logs.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Set at load time, before anything imports prometheus_client: a module imported
# before the variable exists would stay in single-process mode in every worker.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="newsletter-metrics-"))

bind = os.environ.get("BIND", "0.0.0.0:8000")  # in a container, behind a proxy
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))
# The control socket lives at one path per user ($HOME/.gunicorn): several
# instances would fight over it, and a container has no use for it.
control_socket_disable = True
accesslog = "-"
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


def on_starting(server) -> None:
    """Start with an empty metrics folder: files of a previous run would be counted again."""
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def child_exit(server, worker) -> None:
    """Drop a dead worker's live gauges from the shared metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker) -> None:
    """Let the in-process dispatcher record its batch in flight before the worker exits."""
    from newsletter.delivery.dispatcher import stop_background_dispatchers

    stop_background_dispatchers(timeout=max(1.0, server.cfg.graceful_timeout - 2.0))
