"""Which failed batches are the provider's (said, and shown in /admin/stats), which a reader's."""

from __future__ import annotations

import logging

from flask import Flask

from newsletter.delivery.dispatcher import log as dispatcher_log
from newsletter.delivery.failures import FailedBatches
from newsletter.delivery.health import dispatch_health
from newsletter.providers import Outcome, SendResult
from newsletter.providers.http import send_in_groups
from tests.log_lines import said_by


def _failed(error: str, count: int, provider_fault: bool = True) -> list[SendResult]:
    return [SendResult(Outcome.TRANSIENT, error=error, provider_fault=provider_fault)] * count


def test_a_readers_own_refusal_is_not_an_outage_and_names_nobody(app: Flask) -> None:
    # An SMTP 4xx for one recipient (greylisting, a full mailbox) quotes the address: it
    # was logged as an outage and kept in the health record, past the reader's erasure.
    watch = FailedBatches()
    with app.app_context(), said_by(dispatcher_log) as said:
        refused = _failed("SMTP 452: <ann@example.com> mailbox full", 1, provider_fault=False)
        watch.watch("smtp", refused)
        assert dispatch_health().last_error is None
        mixed = _failed("SMTP 451: try later", 2, provider_fault=False)
        watch.watch("smtp", mixed + _failed("connect: refused", 1))  # not all the relay's
        assert dispatch_health().last_error is None
        watch.watch("mailgun", _failed("SMTP 451: try later", 2, provider_fault=False))
        assert dispatch_health().last_error is None
        watch.watch("postmark", _failed("HTTP 503 for ann@example.com's batch", 2))
        assert dispatch_health().last_error == "postmark: HTTP 503 for a***@example.com's batch"
        watch.watch("smtp", _failed("connect: [Errno 111] Connection refused", 1))
        assert dispatch_health().last_error == "smtp: connect: [Errno 111] Connection refused"
    assert len(said) == 2 and not any("ann@" in line for line in said)


def test_the_warnings_come_once_a_minute_and_count_the_rest(app: Flask) -> None:
    now = [0.0]
    watch = FailedBatches(clock=lambda: now[0])
    with app.app_context(), said_by(dispatcher_log, logging.INFO) as said:
        for seconds in (0.0, 10.0, 20.0, 61.0):
            now[0] = seconds
            watch.watch("postmark", _failed("HTTP 503", 2))
    assert len(said) == 2 and "(2 more in the last 60 s)" in said[1]


def test_a_batch_of_one_request_a_message_that_stops_at_an_outage_is_an_outage(app: Flask) -> None:
    # Mailgun sends a message a call, and the batch stops at the first failure: the rest
    # came back "not tried", with another error text, and the outage went unsaid.
    down = SendResult(Outcome.TRANSIENT, error="connection failed: refused", provider_fault=True)
    calls = [([i], lambda: [down]) for i in range(3)]
    results = send_in_groups(calls, 3)
    assert [r.error for r in results[1:]] == ["not tried: connection failed: refused"] * 2
    with app.app_context(), said_by(dispatcher_log) as said:
        FailedBatches().watch("mailgun", results)
        assert dispatch_health().last_error == "mailgun: connection failed: refused"
    assert len(said) == 1
