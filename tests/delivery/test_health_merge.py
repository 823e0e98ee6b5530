"""Several dispatcher processes' health records, as the web workers report them."""

from __future__ import annotations

import time

from newsletter.delivery.health import DispatchHealth, HealthPublisher, health_file
from tests.conftest import is_postgresql


def test_each_process_has_its_own_file_beside_the_first() -> None:
    assert health_file("/run/d/health.json", 0) == "/run/d/health.json"
    assert health_file("/run/d/health.json", 1) == "/run/d/health-1.json"
    assert health_file("/run/d/health.json", 2) == "/run/d/health-2.json"


def test_a_pause_or_rate_limit_of_any_process_holds_and_its_error_shows() -> None:
    now = time.monotonic()
    calm = DispatchHealth(last_error="old: timed out", last_pass_at="2026-11-25T06:00:01+00:00")
    paused = DispatchHealth(
        paused_until=now + 60, last_error="HTTP 401", last_pass_at="2026-11-25T06:00:00+00:00"
    )
    limited = DispatchHealth(rate_limited_until=now + 30, last_pass_at=None)

    merged = DispatchHealth.merged([calm, paused, limited])

    assert merged.paused and merged.rate_limited
    assert merged.last_error == "HTTP 401"  # the error of a process held now, not an old one
    assert merged.last_pass_at == "2026-11-25T06:00:01+00:00"  # the latest of them


def test_gunicorns_processes_report_the_oldest_pass_so_a_stopped_one_shows() -> None:
    stuck = DispatchHealth(last_pass_at="2026-11-25T06:00:00+00:00")  # process 0, wedged
    idle = DispatchHealth(last_pass_at="2026-11-25T06:05:00+00:00")  # the digests', looking
    assert DispatchHealth.merged([stuck, idle], oldest_pass=True).last_pass_at == stuck.last_pass_at
    # One that has not passed yet (or never published): no pass to vouch for all of them.
    assert DispatchHealth.merged([DispatchHealth(), idle], oldest_pass=True).last_pass_at is None


def test_healthy_processes_merge_healthy_and_blank_records_stay_blank() -> None:
    expired = DispatchHealth(paused_until=time.monotonic() - 1, last_error="HTTP 401")
    merged = DispatchHealth.merged([DispatchHealth(), expired])
    assert not merged.paused and not merged.rate_limited
    assert merged.last_error == "HTTP 401"  # the last error any of them met, as one shows it
    assert DispatchHealth.merged([DispatchHealth(), DispatchHealth()]) == DispatchHealth()


def test_a_publisher_saves_a_change_at_once_and_an_unchanged_record_rarely() -> None:
    saved: list[tuple[float, str | None]] = []
    answers = iter([False, True, True, True])  # the first save fails: a disk full, a lost row

    def save(health: DispatchHealth) -> bool:
        saved.append((health.paused_until, health.last_error))
        return next(answers)

    clock = [100.0]  # the publisher's clock, moved by hand: no timing window to miss
    publish = HealthPublisher(save, every=0.2, clock=lambda: clock[0])
    health = DispatchHealth()
    publish(health)  # fails: not counted as published
    publish(health)  # so it is tried again
    publish(health)  # unchanged and just published: skipped
    health.paused_until, health.last_error = time.monotonic() + 60, "HTTP 401"
    publish(health)  # changed: at once
    clock[0] += 0.19
    publish(health)  # unchanged, published 0.19 s ago: skipped
    assert saved == [(0.0, None), (0.0, None), (health.paused_until, "HTTP 401")]
    clock[0] += 0.02
    publish(health)  # unchanged, but its last publication is older than ``every``
    assert len(saved) == 4


def test_workers_read_the_digest_process_record_where_gunicorn_starts_one(
    make_app, tmp_path, database_uri, admin_headers
) -> None:
    # DISPATCH_PROCESSES=1, DISPATCH_DIGEST_PROCESSES unset: on PostgreSQL gunicorn
    # starts process 1 for digests, and its pause must reach /healthz; on SQLite
    # there is no such process, and a stray file of that name is not read.
    first = str(tmp_path / "health.json")
    worker = make_app(DISPATCH_IN_PROCESS=False, DISPATCH_HEALTH_FILE=first)
    DispatchHealth(last_pass_at="2026-12-06T19:00:00+00:00").save(first)
    paused = DispatchHealth(paused_until=time.monotonic() + 60, last_error="HTTP 401")
    paused.save(health_file(first, 1))
    health = worker.test_client().get("/healthz").get_json()
    if is_postgresql(database_uri):
        assert health["dispatch"]["paused"] is True
        stats = worker.test_client().get("/admin/stats", headers=admin_headers).get_json()
        assert stats["dispatch"]["last_error"] == "HTTP 401"
    else:
        assert "dispatch" not in health


def test_workers_read_as_many_files_as_the_master_says_it_started(make_app, tmp_path) -> None:
    # gunicorn's master hands down how many processes it started (DISPATCH_HEALTH_FILES):
    # the workers read that many records, whatever their own reading of the settings.
    first = str(tmp_path / "health.json")
    DispatchHealth(last_pass_at="2026-12-06T19:00:00+00:00").save(first)
    paused = DispatchHealth(paused_until=time.monotonic() + 60, last_error="HTTP 401")
    paused.save(health_file(first, 1))
    for started, reported in ((2, True), (1, False)):
        worker = make_app(
            DISPATCH_IN_PROCESS=False,
            DISPATCH_HEALTH_FILE=first,
            DISPATCH_HEALTH_FILES=started,
            DISPATCH_DIGEST_PROCESSES=2 - started,  # a rule that says otherwise: it must not count
        )
        health = worker.test_client().get("/healthz").get_json()
        if reported:
            assert health["dispatch"]["paused"] is True
        else:  # process 1's file is a stray: not read
            assert "dispatch" not in health
