"""Benchmark: one digest to N confirmed subscribers on PostgreSQL, through a local fake provider.

    .venv/bin/python bench/digest.py [--sizes 10000 100000] [--processes 1 2]
        [--celery-workers 1 2] [--celery-prefork 2] [--celery-broker URL]
        [--database-url URL] [--profile DIR] [--rounds N] [--json FILE]

For each size it resets the database, inserts N confirmed subscribers and three
posts, starts the senders (each polls the empty queue, as running dispatchers
have: ``idle_polls.py``), triggers the digest (one INSERT ... SELECT), then has
it sent by the real dispatcher, in-process (``--processes``: that many ``dispatch_pass``
processes) or through Celery (``--celery-workers``: that many solo workers
on Redis; ``--celery-prefork``: one worker with that many pool processes),
against the fake and, just before and just after, a bare client posting the
same number of pre-built batches to the same fake. It prints our rate beside
the mean of the two bare ones, the CPU each spent per message (sender or client, fake, the rest:
PostgreSQL) and the peak memory of every sending process. ``--rounds N``
runs the whole set N times over, one round after another, and ends with
each run's median ratio and range: the machine's speed swings by a third
within minutes, so one round lands a ratio near the line on either side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median, median_low

import orjson
import requests
from sqlalchemy import insert

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

import fake_provider  # noqa: E402
from procfs import children, machine_busy_seconds, peak_rss_kib, process_cpu_seconds  # noqa: E402
from schema import fresh_schema  # noqa: E402
from spy import require as require_py_spy  # noqa: E402

from newsletter import create_app  # noqa: E402
from newsletter.digests.service import create_digest  # noqa: E402
from newsletter.extensions import db  # noqa: E402
from newsletter.models import Post, Status, Subscriber, new_public_id, utcnow  # noqa: E402
from newsletter.providers import Message, Stream  # noqa: E402
from newsletter.providers.postmark import PostmarkProvider  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_digest"
DEFAULT_BROKER = "redis://127.0.0.1:6379/9"
BATCH = 500


def add_posts(digest_number: int) -> None:
    """Add a digest's three posts (each digest's the same length) to the session."""
    for n in range(3):
        db.session.add(
            Post(
                title=f"Massage Therapy & Running Form, part {n + 1}",
                url=f"https://clinic.example.org/2020/10/hip-extension-{n}/{digest_number or ''}",
                summary="Both hip flexion and hip extension are needed in running gait. " * 4,
                author="Amanda Kerpius",
            )
        )


def seed(url: str, size: int) -> None:
    """Insert ``size`` confirmed subscribers and a digest's three posts."""
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url})
    now = utcnow()
    with app.app_context():
        for start in range(0, size, 10_000):
            db.session.execute(
                insert(Subscriber),
                [
                    {
                        "email": f"reader{i}@example.com",
                        "public_id": new_public_id(),
                        "status": Status.CONFIRMED,
                        "round": 0,
                        "created_at": now,
                        "updated_at": now,
                        "confirmed_at": now,
                        "soft_bounces": 0,
                    }
                    for i in range(start, min(size, start + 10_000))
                ],
            )
        add_posts(0)
        db.session.commit()
        db.engine.dispose()


def trigger(url: str) -> tuple[float, dict, int]:
    """Trigger the digest: its seconds, one copy's Postmark payload (the bare client's), its id."""
    # No broker, whatever the bench's shell says: the commit would queue a dispatch task
    # that the Celery workers, already up, would start on before the clock.
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench",
            "SQLALCHEMY_DATABASE_URI": url,
            "CELERY_BROKER_URL": "",
        }
    )
    with app.app_context():
        started = time.perf_counter()
        digest = create_digest(db.session)
        trigger_seconds = time.perf_counter() - started
        # One real rendered copy: the bare client sends batches of its exact shape.
        from newsletter.delivery.digest_email import _shared_for

        shared = _shared_for(digest.id)
        text_body, html_body = shared.for_reader("http://localhost:5000/unsubscribe/x")
        sample = PostmarkProvider("bench", "http://unused", "broadcast", 60).payload(
            Message(
                key="k",
                to="x@example.com",
                sender=app.config["MAIL_FROM"],
                subject=shared.subject,
                text=text_body,
                html=html_body,
                headers={"List-Unsubscribe": "<http://localhost:5000/unsubscribe/x>"},
                stream=Stream.BROADCAST,
            )
        )
        digest_id = digest.id
        db.engine.dispose()
    return trigger_seconds, sample, digest_id


def sender_env(url: str, fake: str) -> dict[str, str]:
    """The environment of every sending process: our Postmark provider to the fake, 500 a batch."""
    return {
        **os.environ,
        "SECRET_KEY": "bench",
        "DATABASE_URL": url,
        "EMAIL_PROVIDER": "postmark",
        "POSTMARK_API_URL": fake,
        "POSTMARK_SERVER_TOKEN": "bench",
        "DISPATCH_BATCH_SIZE": str(BATCH),
        "DISPATCH_IN_PROCESS": "false",
    }


class CpuSplit:
    """Where the machine's CPU went while a sender ran: it, the fake, and the rest.

    The rest is PostgreSQL, almost all of it, plus the bench and the system.
    """

    def __init__(self, fake_pid: int) -> None:
        self.fake_pid = fake_pid
        self.fake = process_cpu_seconds(fake_pid)
        self.busy = machine_busy_seconds()

    def per_message_us(self, own_seconds: float, messages: int) -> str:
        """``own / fake / rest`` in microseconds of CPU per message sent."""
        fake = process_cpu_seconds(self.fake_pid) - self.fake
        rest = machine_busy_seconds() - self.busy - fake - own_seconds
        parts = (own_seconds, fake, rest)
        return " / ".join(f"{seconds * 1e6 / messages:.0f}" for seconds in parts)


def sending_env(url: str, fake: str, processes: int) -> dict[str, str]:
    """A sender's environment with ``DISPATCH_PROCESSES`` as the operator would set it."""
    return {**sender_env(url, fake), "DISPATCH_PROCESSES": str(processes)}


def digest_senders(env: dict[str, str]) -> int:
    """How many digests-only processes gunicorn would start with the senders' ``env``."""
    from config import digest_processes, from_env

    # This bench runs on PostgreSQL only (fresh_schema drops a PostgreSQL schema).
    return digest_processes(from_env(env), postgresql=True)


class InProcessSenders:
    """The dispatcher processes gunicorn would run, started before the digest is queued.

    ``processes`` is ``DISPATCH_PROCESSES``; the ``DISPATCH_DIGEST_PROCESSES``
    (unset: one beside a single process) start too, as gunicorn starts them.
    Each boots, polls the empty queue (``bench/idle_polls.py``) and says
    ``ready``; ``send`` then starts them all at once. ``profile``: each
    sender's py-spy stacks go to ``{profile}-{pid}.txt``.
    """

    def __init__(self, url: str, fake: str, processes: int, profile: Path | None = None) -> None:
        # Each sender then runs the threads its default gives and, past the first
        # DISPATCH_PROCESSES, claims digest copies only (the bench's environment wins).
        env = sending_env(url, fake, processes)
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
            env["BENCH_PROFILE"] = str(profile)
        self.digest_processes = digest_senders(env)
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "sender.py")],
                env={**env, "BENCH_SENDER_INDEX": str(index)},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for index in range(processes + self.digest_processes)
        ]
        for proc in self.procs:  # every sender imported, built its app and polled
            if proc.stdout is None or proc.stdout.readline().strip() != b"ready":
                self.close()
                raise RuntimeError("a sender did not start")

    def send(self, digest_id: int, fake_pid: int) -> dict:
        """Start every sender at once; messages sent, span, CPU split, peak RSS.

        They send whatever is due: ``digest_id`` is for the Celery senders' clock.
        """
        cpu = CpuSplit(fake_pid)
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        results = []
        for proc in self.procs:
            out, _ = proc.communicate()
            assert proc.returncode == 0, "a sender failed"
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        sent = sum(r["sent"] for r in results)
        collector = sum(r["gc_seconds"] for r in results) * 1e6 / max(sent, 1)
        print(f"garbage collector: {collector:.1f} µs a message", file=sys.stderr)
        return {
            "sent": sent,
            "digest_processes": self.digest_processes,
            "cpu_us": cpu.per_message_us(sum(r["cpu_seconds"] for r in results), sent),
            "seconds": max(r["finished"] for r in results) - min(r["started"] for r in results),
            "rss_peak_kib": max(r["rss_peak_kib"] for r in results),
            "rss_start_kib": max(r["rss_start_kib"] for r in results),
        }

    def close(self) -> None:
        """Stop any sender still running (a run that failed before or during ``send``)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)


class CelerySenders:
    """``workers`` Celery workers, started before the digest is queued; ``send`` wakes them.

    ``pool`` 1: each a solo worker (the task runs in the worker's own
    process); more: each a prefork worker with that many pool processes, as
    docker-compose.yml runs one, and the peak memory is its processes'
    highest. Each process that runs tasks polls the empty queue once its app
    is built (``bench/celery_worker.py``), as beat's dispatch tasks have it do.
    """

    def __init__(self, url: str, fake: str, workers: int, broker: str, pool: int = 1) -> None:
        from celery import Celery

        self.url, self.broker = url, broker
        env = {**sender_env(url, fake), "CELERY_BROKER_URL": broker}
        Celery(broker=broker).connection_for_write().default_channel.client.flushdb()
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(HERE / "celery_worker.py"), f"bench{n}", str(pool)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            for n in range(workers)
        ]
        try:
            for proc in self.procs:
                wait_for_ready(proc, pool)
        except BaseException:
            self.close()
            raise

    def send(self, digest_id: int, fake_pid: int) -> dict:
        """Queue the dispatch tasks as the web app does; seconds until the digest is sent, RSS.

        ``fake_pid`` is for the in-process senders' CPU split, which this does not take.
        """
        rss_start = max(peak_rss_kib(pid) for pid in _worker_processes(self.procs))
        seconds = _timed_celery_send(self.url, self.broker, digest_id)
        rss_peak = max(peak_rss_kib(pid) for pid in _worker_processes(self.procs))
        return {"seconds": seconds, "rss_peak_kib": rss_peak, "rss_start_kib": rss_start}

    def close(self) -> None:
        """Stop the workers (a warm shutdown), and wait for them."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(30)


def _worker_processes(procs: list[subprocess.Popen]) -> list[int]:
    """Every worker's own process and its pool's (a prefork worker's children)."""
    return [pid for proc in procs for pid in (proc.pid, *children(proc.pid))]


def wait_for_ready(proc: subprocess.Popen, processes: int) -> None:
    """Read the worker's output until it is ``ready`` and its ``processes`` built their app.

    A prefork worker says ``ready`` while its pool processes may still be
    building their apps (``worker_process_init``): a clock started then would
    time their start-up, which a running deployment paid long before.
    """
    assert proc.stdout is not None
    seen = {b"ready": 0, b"process ready": 0}
    for line in proc.stdout:
        if line.startswith(b"process failed"):
            raise RuntimeError(f"a Celery worker {line.decode().strip()}")
        if line.strip() in seen:
            seen[line.strip()] += 1
        if seen[b"ready"] and seen[b"process ready"] >= processes:
            return
    raise RuntimeError("a Celery worker ended before it was ready")


def _timed_celery_send(url: str, broker: str, digest_id: int) -> float:
    """Queue the dispatch tasks, wait for the digest to be sent; the seconds it took."""
    import psycopg

    from config import from_env
    from newsletter.tasks import enqueuer

    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        wake = enqueuer(broker, int(from_env()["DISPATCH_FANOUT"]))  # as the workers see it
        started = time.perf_counter()
        wake()
        deadline = started + 600
        while time.perf_counter() < deadline:
            row = conn.execute(
                "SELECT status, recipients FROM digests WHERE id = %s", (digest_id,)
            ).fetchone()
            if row and row[0] in ("sent", "failed"):
                status, recipients = row
                elapsed = time.perf_counter() - started
                # "sent" also covers copies that failed for good: count what went out.
                (sent,) = conn.execute(
                    "SELECT count(*) FROM deliveries WHERE digest_id = %s AND status = 'sent'",
                    (digest_id,),
                ).fetchone()
                if status != "sent" or sent != recipients:  # no send rate to report then
                    raise RuntimeError(f"digest {digest_id} {status}: {sent} of {recipients} sent")
                return elapsed
            time.sleep(0.005)
    raise RuntimeError("the Celery workers did not send the digest within 600 s")


def bare_client(fake: str, sample: dict, size: int, fake_pid: int) -> tuple[float, str]:
    """Messages per second of a plain loop posting pre-built batches (built before timing).

    Also its CPU split per message (the client, the fake, the rest).
    """
    batches = []
    for start in range(0, size, BATCH):
        batches.append(  # encoded as our provider encodes them (orjson)
            orjson.dumps(
                [
                    {**sample, "To": f"reader{i}@example.com"}
                    for i in range(start, min(size, start + BATCH))
                ]
            )
        )
    session = requests.Session()
    cpu = CpuSplit(fake_pid)
    started, cpu_started = time.perf_counter(), time.process_time()
    for body in batches:
        response = session.post(
            f"{fake}/email/batch",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        response.raise_for_status()
        response.json()
    rate = size / (time.perf_counter() - started)
    return rate, cpu.per_message_us(time.process_time() - cpu_started, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument(
        "--processes", type=int, nargs="*", default=[1, 2], help="in-process dispatchers per run"
    )
    parser.add_argument(
        "--celery-workers", type=int, nargs="*", default=[], help="Celery workers per run"
    )
    parser.add_argument(
        "--celery-prefork",
        type=int,
        nargs="*",
        default=[],
        help="pool processes of one prefork Celery worker per run (docker-compose.yml's is 2)",
    )
    parser.add_argument("--celery-broker", default=DEFAULT_BROKER)
    parser.add_argument(
        "--profile", metavar="DIR", type=Path, help="py-spy every in-process sender into DIR"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="run the whole set this many times; print medians"
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the figures here (for bench/plot.py): with --rounds, each run's median",
    )
    args = parser.parse_args()
    if args.profile:
        require_py_spy()
    fake, base = fake_provider.start()
    runs = [
        *(("in-process", n) for n in args.processes),
        *(("celery", n) for n in args.celery_workers),
        *(("celery-prefork", n) for n in args.celery_prefork),
    ]
    figures = []
    try:
        rows = []
        for _ in range(args.rounds):
            for size in args.sizes:
                for mode, count in runs:
                    figure, row = one_run(args, base, fake.pid, size, mode, count)
                    figures.append(figure)
                    rows.append(row)
                    print(row, file=sys.stderr, flush=True)
        print(
            "| subscribers | sending processes | trigger (s) | dispatcher msg/s "
            "| bare client msg/s | ratio | peak RSS per sender (MiB) | RSS at start (MiB) "
            "| CPU µs/msg, senders / fake / rest | bare: client / fake / rest "
            "| bare msg/s before / after |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
        if args.rounds > 1:
            print_medians(figures)
        if args.json:
            args.json.write_text(json.dumps(median_figures(figures), indent=1))
    finally:
        fake.terminate()
        fake.wait(10)


def _rounds_of_each_run(figures: list[dict]) -> dict[tuple[int, str, int], list[dict]]:
    """The figures grouped by run (size, way, processes), in the order they first ran."""
    runs: dict[tuple[int, str, int], list[dict]] = {}
    for figure in figures:
        runs.setdefault((figure["size"], figure["mode"], figure["processes"]), []).append(figure)
    return runs


def label(mode: str, count: int, digests: int = 0) -> str:
    """How a row names the way it was sent (``digests``: processes sending digests only)."""
    if mode == "celery":
        return f"{count} Celery"
    if mode == "celery-prefork":
        return f"1 Celery, prefork {count}"
    return f"{count} + {digests} for digests" if digests else str(count)


def median_figures(figures: list[dict]) -> list[dict]:
    """For each run (size, way, processes), the round whose ratio is the median (the lower one)."""
    chosen = []
    for rounds in _rounds_of_each_run(figures).values():
        middle = median_low(f["dispatcher"] / f["bare"] for f in rounds)
        chosen.append(next(f for f in rounds if f["dispatcher"] / f["bare"] == middle))
    return chosen


def print_medians(figures: list[dict]) -> None:
    """One line per run: its rounds' median ratio, their range, the median rates."""
    print()
    print(
        "| subscribers | sending processes | rounds | ratio, median | ratio, range "
        "| dispatcher msg/s, median | bare client msg/s, median |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for (size, mode, count), rounds in _rounds_of_each_run(figures).items():
        ratios = [f["dispatcher"] / f["bare"] for f in rounds]
        name = label(mode, count, rounds[0].get("digest_processes", 0))
        print(
            f"| {size:,} | {name} | {len(rounds)} | {median(ratios):.2f} "
            f"| {min(ratios):.2f}-{max(ratios):.2f} "
            f"| {median(f['dispatcher'] for f in rounds):,.0f} "
            f"| {median(f['bare'] for f in rounds):,.0f} |"
        )


def one_run(
    args: argparse.Namespace, base: str, fake_pid: int, size: int, mode: str, count: int
) -> tuple[dict, str]:
    """One size sent one way, the bare client just before and just after: figure and row.

    The senders start and poll the empty queue first, then the digest is
    queued, as an admin triggers one while the dispatchers idle. The
    machine's speed drifts within a minute: the ratio is to the mean of the
    two bare runs that bracket ours, each printed too.
    """
    fresh_schema(args.database_url)
    seed(args.database_url, size)
    senders: InProcessSenders | CelerySenders
    if mode == "celery":
        senders = CelerySenders(args.database_url, base, count, args.celery_broker)
    elif mode == "celery-prefork":
        senders = CelerySenders(args.database_url, base, 1, args.celery_broker, count)
    else:
        profile = args.profile / f"sender-{size}-{count}" if args.profile else None
        senders = InProcessSenders(args.database_url, base, count, profile)
    try:
        trigger_seconds, sample, digest_id = trigger(args.database_url)
        bare_before, _ = bare_client(base, sample, size, fake_pid)
        sent = senders.send(digest_id, fake_pid)
        assert sent.get("sent", size) == size, sent  # the Celery clock checks it itself
    finally:
        senders.close()
    dispatcher_rate = size / sent["seconds"]
    bare_after, bare_cpu = bare_client(base, sample, size, fake_pid)
    bare_rate = (bare_before + bare_after) / 2
    figure = {
        "size": size,
        "processes": count,
        "digest_processes": sent.get("digest_processes", 0),  # in-process runs only
        "mode": mode,
        "dispatcher": dispatcher_rate,
        "bare": bare_rate,
        "bare_before": bare_before,
        "bare_after": bare_after,
        "rss_peak_mib": sent["rss_peak_kib"] / 1024,
    }
    row = (
        f"| {size:,} | {label(mode, count, figure['digest_processes'])} "
        f"| {trigger_seconds:.2f} "
        f"| {dispatcher_rate:,.0f} "
        f"| {bare_rate:,.0f} | {dispatcher_rate / bare_rate:.2f} "
        f"| {sent['rss_peak_kib'] / 1024:.0f} | {sent['rss_start_kib'] / 1024:.0f} "
        f"| {sent.get('cpu_us', '-')} | {bare_cpu} | {bare_before:,.0f} / {bare_after:,.0f} |"
    )
    return figure, row


if __name__ == "__main__":
    main()
