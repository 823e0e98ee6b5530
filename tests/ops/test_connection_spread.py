"""gunicorn with gunicorn.conf.py: clients that keep their connections open reach every worker.

A gthread worker accepts as many connections as it is offered, up to
``worker_connections``. At gunicorn's default (1,000), 16 connections opened
at once could all land on the worker that woke first. The config caps a
worker at twice its threads, so with 2 workers of 4 threads the 16 are
shared out: no worker holds more than 8, and every request is answered.
"""

from __future__ import annotations

import http.client
import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.ops.gunicorn_master import gunicorn_master

CLIENTS = 16
PER_WORKER = 8  # 2 * WEB_THREADS (4)


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started: gunicorn's workers."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets ``pid`` has open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _established_on(port: int) -> dict[str, int]:
    """Established TCP connections whose local end is ``port``: inode -> count (IPv4)."""
    found: dict[str, int] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
            found[inode] = found.get(inode, 0) + 1
    return found


@pytest.mark.slow
def test_sixteen_kept_alive_connections_are_shared_by_the_workers(
    database_uri: str, tmp_path: Path
) -> None:
    with gunicorn_master(database_uri, tmp_path, "wsgi:app", DISPATCH_PROCESS="false") as (
        master,
        base,
        _log,
    ):
        port = urlsplit(base).port
        assert port is not None
        clients = [
            http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(CLIENTS)
        ]
        for client in clients:
            client.connect()  # all open before any request, as a load generator opens them
        try:
            for client in clients:
                client.request("GET", "/healthz")
            statuses = [client.getresponse() for client in clients]
            answered = [(response.status, response.read()) for response in statuses]
            server_side = _established_on(port)
            held = [
                sum(server_side.get(inode, 0) for inode in _socket_inodes(worker))
                for worker in _children(master.pid)
            ]
        finally:
            for client in clients:
                client.close()

    assert [status for status, _ in answered] == [200] * CLIENTS
    assert len(held) == 2, held
    assert max(held) <= PER_WORKER, held  # none took more than its share
    assert min(held) > 0, held  # and each took some
