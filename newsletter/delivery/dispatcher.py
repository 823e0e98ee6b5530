"""The dispatcher: claim due deliveries in batches, render, send, record.

Every email leaves through ``dispatch_pass``, whoever calls it: gunicorn's
dispatcher process (the default, ``dispatch_process.py``), a thread in each
web process (``flask run``, ``DISPATCH_PROCESS=false``), ``flask outbox
dispatch`` from cron, or a Celery worker.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from ..db_helpers import is_postgresql
from ..errors import describe
from ..extensions import db
from ..metrics import DISPATCH_SECONDS, IN_FLIGHT, PROVIDER_ANSWERS
from ..models import DeliveryKind, utcnow
from ..providers import Message, Outcome, Provider, SendResult
from ..providers.budget import sending_until
from . import digest_email, ledger  # noqa: F401 (digest_email registers its renderers)
from .digest_progress import mark_sending, settle
from .failures import FAILED_BATCHES
from .health import FILE_EVERY, HealthPublisher, dispatch_health, save_to_file
from .render import render_batch

if TYPE_CHECKING:  # housekeeping imports the delivery layer: no import back at run time
    from ..housekeeping import Job

log = logging.getLogger(__name__)
# A pass settles the digests it sent copies of as it ends, and at most this often
# before that (a long pass: a queue that keeps filling batches, or SEND_RATE).
PASS_SETTLES_EVERY_SECONDS = 1.0


@dataclass
class PassStats:
    """What one dispatch pass did."""

    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str, n: int = 1) -> None:
        """Add ``n`` to an outcome's count."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + n


def current_provider() -> Provider:
    """The provider the running app sends through."""
    return current_app.extensions["newsletter.provider"]


def retry_policy() -> ledger.RetryPolicy:
    """The back-off settings of the running app."""
    config = current_app.config
    return ledger.RetryPolicy(
        config["RETRY_BASE_SECONDS"],
        config["RETRY_MAX_SECONDS"],
        config["RETRY_MAX_ATTEMPTS"],
        config["RETRY_MAX_AGE"],
    )


def _put_back(stats: PassStats) -> int:
    """How many answers of the pass may have put their copy back in the queue."""
    return stats.outcomes.get(Outcome.TRANSIENT.value, 0) + stats.outcomes.get(
        Outcome.UNKNOWN.value, 0
    )


def dispatch_pass(
    should_stop: Callable[[], bool] | None = None,
    for_seconds: float | None = None,
    on_full_digest_batch: Callable[[], None] | None = None,
    kind: DeliveryKind | None = None,
) -> PassStats:
    """Send due deliveries batch by batch until none is due (or ``for_seconds`` have passed).

    ``should_stop`` is asked before each claim: a shutting-down process
    finishes the batch in flight and claims no other. ``for_seconds``: claim
    no batch once the pass has run that long; the first batch always goes, so
    ``for_seconds=0`` sends exactly one. ``on_full_digest_batch`` is called after
    each claim that filled its batch with digest copies among it: a digest
    is going out, so a dispatcher wakes its helper threads. (A burst of
    confirmations fills batches too, but the signups that queue it are the
    bottleneck: there a helper only cost the dispatcher a fifth more CPU,
    which the web workers could have used.) ``kind``: claim deliveries of
    that kind only (a dispatcher process for digests). The digests it sent
    copies of are settled (sent once no copy is pending) as it ends, and
    every ``PASS_SETTLES_EVERY_SECONDS`` of a longer pass.
    """
    provider = current_provider()
    health = dispatch_health()
    stats = PassStats()
    batch_size = max(1, min(current_app.config["DISPATCH_BATCH_SIZE"], provider.max_batch))
    lease = current_app.config["DISPATCH_LEASE"]
    pace = current_app.extensions["newsletter.pacer"]  # one per process: it outlives the pass
    if pace.rate:
        batch_size = max(1, min(batch_size, int(pace.rate)))
    batches = 0
    sending: set[int] = set()  # the digests this pass sent copies of, not yet finished
    settled_at = time.monotonic()
    until = time.monotonic() + for_seconds if for_seconds is not None else None
    while not (health.paused or health.rate_limited) and (
        until is None or batches == 0 or time.monotonic() < until
    ):
        # The turn is taken before the claim: no batch is held (locked, leased) meanwhile.
        turn = pace.take_turn(batch_size, should_stop)
        if turn is None:
            break
        claimed: list[ledger.Claimed] = []
        try:
            claimed = ledger.claim(db.session, batch_size, lease, kind)
        finally:  # what the claim did not fill (all of it, if the claim failed)
            pace.give_back(turn, batch_size - len(claimed))
        if not claimed:
            break
        batches += 1
        stats.claimed += len(claimed)
        if (
            on_full_digest_batch is not None
            and len(claimed) == batch_size
            and any(d.kind is DeliveryKind.DIGEST for d in claimed)
        ):
            on_full_digest_batch()
        retries_before = _put_back(stats)
        if send_claimed(claimed, provider, stats, sending):
            break  # the provider asked us to wait: the rest of the queue waits too
        if sending and time.monotonic() - settled_at >= PASS_SETTLES_EVERY_SECONDS:
            sending -= settle(db.session, sending)
            settled_at = time.monotonic()
        if len(claimed) < batch_size and _put_back(stats) == retries_before:
            # Nothing else was due at the claim and nothing was put back: spare the
            # empty claim. What is queued from now on wakes the dispatcher again.
            break
    if sending:
        # Not once a batch: whether a copy is still pending reads the digest's
        # copies, and PostgreSQL scans more of them the further it has gone.
        settle(db.session, sending)
    health.last_pass_at = utcnow().isoformat()
    return stats


class Pacer:
    """Holds one process to ``rate`` messages a second (0: no limit), across its passes and threads.

    Each batch takes a turn before it is claimed: ``n / rate`` seconds from
    the later of the last turn's end and now, so a burst is never more than
    one batch however long the process sat idle. What the claim did not fill
    is given back while no later turn has been taken. Kept per process, not
    per pass: a Celery task's pass lasts about a second, and a dispatcher's
    passes follow each other as fast as mail is queued. Turns are taken under
    a lock, so the threads of a Celery ``--pool=threads`` (or gevent's, whose
    lock this becomes) share the rate.
    """

    def __init__(self, rate: float) -> None:
        """A pacer for ``rate`` messages a second; 0 lets every batch go at once."""
        self.rate = rate
        self._next_at = 0.0  # monotonic time the last turn taken ends
        self._lock = threading.Lock()

    def take_turn(self, size: int, should_stop: Callable[[], bool] | None = None) -> float | None:
        """Take the next turn, for up to ``size`` messages, sleep until it starts; when it ends.

        None when ``should_stop`` (asked before the turn starts, and twice a
        second while waiting for it) says to stop: the turn is given back.
        """
        starts = ends = time.monotonic()
        if self.rate:
            with self._lock:
                starts = max(self._next_at, starts)
                self._next_at = ends = starts + size / self.rate
        while True:
            if should_stop is not None and should_stop():
                self.give_back(ends, size)
                return None
            delay = starts - time.monotonic()
            if delay <= 0:
                return ends
            time.sleep(min(delay, 0.5))

    def give_back(self, turn: float, unused: int) -> None:
        """Give back the part of the turn ending at ``turn`` its claim did not fill.

        Only while it is still the last turn taken: shortening a turn another
        batch already follows would let the two go at once.
        """
        if self.rate and unused > 0:
            with self._lock:
                if self._next_at == turn:
                    self._next_at -= unused / self.rate


def send_claimed(
    deliveries: list[ledger.Claimed], provider: Provider, stats: PassStats, sending: set[int]
) -> bool:
    """Render, send, record one claimed batch, mark its digests sending; True: stop the pass.

    ``sending``: the digests the pass marked already; this batch's are added.

    A rate limit or a configuration error ends the pass: sending the next batch
    would only meet the same answer (and, with no back-off configured, claim the
    same deliveries again at once).
    """
    digest_ids = {d.digest_id for d in deliveries if d.kind is DeliveryKind.DIGEST and d.digest_id}
    first_batch_of = digest_ids - sending
    IN_FLIGHT.inc(len(deliveries))
    try:
        with DISPATCH_SECONDS.labels(provider.name).time():
            stop = _send_rendered(deliveries, provider, stats, first_batch_of)
    finally:
        IN_FLIGHT.dec(len(deliveries))
    sending |= first_batch_of
    return stop


def _send_rendered(
    deliveries: list[ledger.Claimed], provider: Provider, stats: PassStats, first_batch_of: set[int]
) -> bool:
    """Render and send; record each answer. True when the provider asked us to stop.

    ``first_batch_of``: the digests this batch is the pass's first of, marked
    sending in the transaction that records the answers.
    """
    session = db.session
    messages = render_batch(deliveries)
    skipped = [d.id for d, m in zip(deliveries, messages, strict=True) if m is None]
    ledger.mark_skipped(session, skipped, "no longer wanted when its turn came")
    stats.count("skipped", len(skipped))
    to_send = [(d, m) for d, m in zip(deliveries, messages, strict=True) if m is not None]
    if not to_send:
        mark_sending(session, first_batch_of)
        session.commit()
        return False
    results = _send(provider, [m for _, m in to_send])
    _write_answers(session, [d for d, _ in to_send], results, provider.name, first_batch_of)
    for outcome, count in Counter(result.outcome.value for result in results).items():
        stats.count(outcome, count)
        PROVIDER_ANSWERS.labels(provider.name, outcome).inc(count)  # once an outcome, not a copy
    _watch_for_config_errors(results)
    _watch_for_rate_limits(results)
    FAILED_BATCHES.watch(provider.name, results)
    _say_unanswered(provider, results)
    if any(result.suppressed for result in results):
        _stop_suppressed(provider, to_send, results)
    return any(r.outcome in (Outcome.RATE_LIMITED, Outcome.CONFIG_ERROR) for r in results)


def _write_answers(
    session: Session,
    deliveries: list[ledger.Claimed],
    results: list[SendResult],
    provider: str,
    first_batch_of: set[int],
) -> None:
    """Record the batch's answers and mark its digests sending, in one commit.

    On PostgreSQL a send that outlasted ``DISPATCH_LEASE`` finds its claim's
    transaction ended by the server: the answers are then written in a new
    one. They were lost, and the same batch was claimed and sent again, for
    ever (a tester's readers got 6 copies in 45 s). ``record`` writes only
    rows still unanswered, so a batch another dispatcher claimed meanwhile is
    written once, by whichever commits first; a database that is down fails
    the second try too, as before.
    """

    def write() -> None:
        ledger.record(session, deliveries, results, retry_policy(), provider)
        mark_sending(session, first_batch_of)
        session.commit()  # the batch's answers and its digests' mark at once

    try:
        write()
    except DBAPIError as exc:
        session.rollback()
        if not exc.connection_invalidated:
            raise  # not the claim's end: the server may have kept the commit
        log.warning(
            "the claim of a batch of %d ended before its answers were written (%s): "
            "writing them again; keep DISPATCH_LEASE above a batch's send time",
            len(deliveries),
            describe(exc),
        )
        if is_postgresql(session):
            # Another dispatcher may hold these rows by now: not its whole lease long.
            session.execute(_ANSWERS_LOCK_WAIT)
        write()


_ANSWERS_LOCK_WAIT = text("SET LOCAL lock_timeout = '5s'")


def _say_unanswered(provider: Provider, results: list[SendResult]) -> None:
    """Log the copies that went out with no answer: their readers may get them twice."""
    unanswered = [r for r in results if r.outcome is Outcome.UNKNOWN]
    if unanswered:
        log.warning(
            "%s: %d message(s) went out with no answer (%s); each is sent once more, or "
            "taken as sent if it went out unanswered before: a reader may get two copies. "
            "A provider slower than PROVIDER_TIMEOUT does this",
            provider.name,
            len(unanswered),
            unanswered[0].error,
        )


def _stop_suppressed(
    provider: Provider, sent: list[tuple[ledger.Claimed, Message]], results: list[SendResult]
) -> None:
    """Stop all mail to the addresses the provider keeps from all mail, as its webhook would.

    Postmark answers 406 for an address it keeps inactive (a hard bounce, a
    complaint, or the reader's own unsubscribe, maybe from before its
    webhook was set up): every digest failed on it again. The provider is
    asked why (``why_suppressed``) only now, the batch recorded: slow
    answers inside the send outlasted its claim, and it went out twice. The
    event goes through the webhooks' own path, keyed by the message: stored
    once, in the consent ledger, outranked as a webhook's would be. A failure
    here is logged; the next refusal tries again.
    """
    from ..webhooks.events import EventKind, WebhookEvent
    from ..webhooks.service import handle

    why = getattr(provider, "why_suppressed", None)
    if why is None:
        return
    events = []
    for (delivery, message), result in zip(sent, results, strict=True):
        if not result.suppressed or delivery.subscriber is None:
            continue
        reason = why(message)
        if reason is None:
            continue  # not known: this copy failed, the reader stays as they were
        events.append(
            WebhookEvent(
                event_id=f"send-refused:{delivery.message_key}",
                kind=EventKind(reason),
                raw_type="SendRefused",
                email=delivery.subscriber.email,
                message_key=delivery.message_key,
                payload={"error": result.error},
                via="send refusal",
            )
        )
    try:
        stopped = handle(db.session, provider.name, events)
    except Exception as exc:
        db.session.rollback()
        log.error("could not stop mail to %d suppressed addresses: %s", len(events), describe(exc))
        return
    if stopped:
        log.warning("%s keeps %d address(es) from all mail: ours stops", provider.name, stopped)


def _send(provider: Provider, messages: list[Any]) -> list[SendResult]:
    """Call the provider; a provider that raises is treated as a transient failure."""
    started = time.monotonic()
    try:
        # Half the lease: a request begun then ends (PROVIDER_TIMEOUT) long before it.
        with sending_until(started + current_app.config["DISPATCH_LEASE"] / 2):
            results = provider.send_batch(messages)
    except Exception as exc:  # a provider bug must not lose the batch: retry it later
        log.exception("provider %s raised while sending %d messages", provider.name, len(messages))
        return [SendResult(Outcome.TRANSIENT, error=f"{type(exc).__name__}: {exc}")] * len(messages)
    finally:
        _warn_if_near_the_lease(time.monotonic() - started, len(messages))
    if len(results) != len(messages):
        log.error(
            "provider %s answered %d results for %d messages",
            provider.name,
            len(results),
            len(messages),
        )
        return [SendResult(Outcome.TRANSIENT, error="provider answered the wrong count")] * len(
            messages
        )
    return results


def _warn_if_near_the_lease(seconds: float, count: int) -> None:
    """Say so when a send takes half the lease: past it, the batch loses its claim."""
    lease = current_app.config["DISPATCH_LEASE"]
    if seconds > lease / 2:
        log.warning(
            "sending %d messages took %.1fs, over half of DISPATCH_LEASE (%ss): a send that "
            "outlasts the lease loses its claim and its batch is sent again; raise the "
            "lease or lower DISPATCH_BATCH_SIZE",
            count,
            seconds,
            lease,
        )


def _watch_for_config_errors(results: list[SendResult]) -> None:
    """Stop sending, loudly, when the provider says our configuration is wrong."""
    errors = [r.error for r in results if r.outcome is Outcome.CONFIG_ERROR]
    if not errors:
        return
    health = dispatch_health()
    pause = current_app.config["RETRY_BASE_SECONDS"]
    health.paused_until = time.monotonic() + pause
    health.last_error = errors[0]
    log.error("provider configuration error, sending paused for %ss: %s", pause, errors[0])


def _watch_for_rate_limits(results: list[SendResult]) -> None:
    """A provider's rate limit is per account: hold every delivery until it has passed."""
    waits = [r.retry_after or 0.0 for r in results if r.outcome is Outcome.RATE_LIMITED]
    if not waits:
        return
    wait = max(max(waits), current_app.config["RETRY_BASE_SECONDS"])
    health = dispatch_health()
    health.rate_limited_until = max(health.rate_limited_until, time.monotonic() + wait)
    log.warning("provider rate limit: sending held for %.1fs", wait)


_RUNNING: set[BackgroundDispatcher] = set()


class BackgroundDispatcher:
    """A dispatcher thread: woken after each commit that queued mail, else every ``interval``.

    It also runs the app's periodic jobs (housekeeping such as purging old
    pending signups) between passes, so the embedded default needs no cron.
    In gunicorn's dispatcher process nothing wakes it: it polls, and
    publishes its health to ``health_file`` for the web workers. Its
    ``helpers`` (``DISPATCH_THREADS``) are woken whenever it claims a full
    batch of a digest, and send beside it: while one waits on the database
    or the provider, another renders. ``kind``: it sends deliveries of that
    kind only.
    """

    def __init__(
        self,
        app: Flask,
        jobs: Sequence[Job] = (),
        interval: float | None = None,
        health_file: str | None = None,
        helpers: Sequence[BackgroundDispatcher] = (),
        name: str = "newsletter-dispatcher",
        coalesce: float | None = None,
        kind: DeliveryKind | None = None,
    ) -> None:
        self.app = app
        self.name = name
        self.kind = kind
        self._helpers = helpers
        # Seconds to wait after a wake-up for the rest of a burst (default DISPATCH_COALESCE).
        self._coalesce = coalesce if coalesce is not None else app.config["DISPATCH_COALESCE"]
        # Where to publish the health record after each pass (the dispatcher process).
        self._publish = (
            HealthPublisher(save_to_file(health_file), FILE_EVERY) if health_file else None
        )
        # Seconds between passes when nothing wakes it (default DISPATCH_INTERVAL).
        self.interval = interval if interval is not None else app.config["DISPATCH_INTERVAL"]
        self._jobs = jobs  # housekeeping.JOBS, run between passes
        self._last_run = {job.name: float("-inf") for job in jobs}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread once; later calls do nothing."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
            _RUNNING.add(self)
            atexit.register(self.stop)

    def wake(self) -> None:
        """Ask for a pass as soon as possible."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the batch in flight, then end the thread."""
        self.ask_to_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        _RUNNING.discard(self)

    def ask_to_stop(self) -> None:
        """Claim no other batch; ``stop`` then waits for the one in flight."""
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        interval = self.interval
        coalesce = self._coalesce
        failures = 0
        while not self._stop.is_set():
            woken = self._wake.wait(
                interval if failures == 0 else min(60.0, interval * 2**failures)
            )
            if woken and coalesce > 0:
                # Let the rest of a burst commit: one pass then sends it all, instead
                # of a claim and a record per signup competing with the signups.
                self._stop.wait(coalesce)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self.app.app_context():
                try:
                    self._run_periodic()
                    dispatch_pass(
                        should_stop=self._stop.is_set,
                        on_full_digest_batch=self._wake_helpers if self._helpers else None,
                        kind=self.kind,
                    )
                    failures = 0
                except Exception as exc:  # the database is down, say: wait and try again
                    failures += 1
                    dispatch_health(self.app).last_error = describe(exc)
                    log.warning("dispatch pass failed (%s); retrying", type(exc).__name__)
                finally:
                    db.session.remove()
                    if self._publish is not None:
                        self._publish(dispatch_health(self.app))

    def _wake_helpers(self) -> None:
        for helper in self._helpers:
            helper.wake()

    def _run_periodic(self) -> None:
        now = time.monotonic()
        for job in self._jobs:
            if now - self._last_run[job.name] >= job.every:
                self._last_run[job.name] = now
                job.run_alone()


def stop_background_dispatchers(timeout: float = 30.0) -> None:
    """Stop every dispatcher thread of this process, each after its batch in flight.

    gunicorn's ``worker_exit`` hook calls it, so a worker told to stop (SIGTERM,
    a deploy) records what its provider answered before it exits.
    """
    running = list(_RUNNING)
    for dispatcher in running:  # all at once: none claims another batch meanwhile
        dispatcher.ask_to_stop()
    for dispatcher in running:
        dispatcher.stop(timeout)


def wake_dispatcher() -> None:
    """Tell whoever dispatches for this app that new deliveries were committed."""
    if not has_app_context():
        return
    waker = current_app.extensions.get("newsletter.dispatch_waker")
    if waker is not None:
        waker()


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(ledger.WAKE_FLAG, False):
        wake_dispatcher()


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(ledger.WAKE_FLAG, None)
