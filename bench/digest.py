"""Benchmark: one digest to N confirmed subscribers on PostgreSQL, through a local fake provider.

    .venv/bin/python bench/digest.py [--sizes 10000 100000] [--database-url URL]

For each size it resets the database, inserts N confirmed subscribers and a
post, triggers the digest (one INSERT ... SELECT), then runs the real
dispatcher in its own process against the fake and, in the same run, a bare
client posting the same number of pre-built batches to the same fake. It
prints both rates side by side and the sending process's peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy import insert

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

from http_provider import payload  # noqa: E402
from pgschema import empty_schema  # noqa: E402

from newsletter import MIGRATIONS_DIR, create_app  # noqa: E402
from newsletter.digests.service import create_digest  # noqa: E402
from newsletter.extensions import db  # noqa: E402
from newsletter.models import Post, Status, Subscriber, new_public_id, utcnow  # noqa: E402
from newsletter.providers import Message, Stream  # noqa: E402

DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_test_digests"
BATCH = 500


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_fake() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_provider.py"), str(port)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    return proc, f"http://127.0.0.1:{port}"


def reset_database(url: str) -> None:
    """An empty, freshly migrated schema (the database is created if missing)."""
    empty_schema(url)
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": url})
    from flask_migrate import upgrade

    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR))
        db.engine.dispose()


def seed_and_trigger(url: str, size: int) -> tuple[float, dict]:
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
        for n in range(3):
            db.session.add(
                Post(
                    title=f"Massage Therapy & Running Form, part {n + 1}",
                    url=f"https://clinic.example.org/2020/10/hip-extension-{n}/",
                    summary="Both hip flexion and hip extension are needed in running gait. " * 4,
                    author="Amanda Kerpius",
                )
            )
        db.session.commit()
        started = time.perf_counter()
        digest = create_digest(db.session)
        trigger_seconds = time.perf_counter() - started
        # One real rendered copy: the bare client sends batches of its exact shape.
        from newsletter.delivery.digest_email import _shared_for

        shared = _shared_for(digest.id)
        text_body, html_body = shared.for_reader("http://localhost:5000/unsubscribe/x" * 1)
        sample = payload(
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
        db.engine.dispose()
    return trigger_seconds, sample


def run_senders(url: str, fake: str, processes: int) -> dict:
    """Run ``processes`` dispatchers at once; messages sent, span in seconds, peak RSS."""
    env = {
        **os.environ,
        "SECRET_KEY": "bench",
        "DATABASE_URL": url,
        "EMAIL_PROVIDER": "bench-http",
        "BENCH_PROVIDER_URL": fake,
        "DISPATCH_BATCH_SIZE": str(BATCH),
        "DISPATCH_IN_PROCESS": "false",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "sender.py")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    results = []
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, "a sender failed"
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    return {
        "sent": sum(r["sent"] for r in results),
        "seconds": max(r["finished"] for r in results) - min(r["started"] for r in results),
        "rss_peak_kib": max(r["rss_peak_kib"] for r in results),
        "rss_start_kib": max(r["rss_start_kib"] for r in results),
    }


def bare_client(fake: str, sample: dict, size: int) -> float:
    """Messages per second of a plain loop posting pre-built batches (built before timing)."""
    batches = []
    for start in range(0, size, BATCH):
        batches.append(
            json.dumps(
                [
                    {**sample, "To": f"reader{i}@example.com"}
                    for i in range(start, min(size, start + BATCH))
                ]
            ).encode()
        )
    session = requests.Session()
    started = time.perf_counter()
    for body in batches:
        response = session.post(
            f"{fake}/email/batch",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
        response.raise_for_status()
        response.json()
    return size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    parser.add_argument(
        "--processes", type=int, nargs="+", default=[1, 2], help="dispatcher processes per run"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/plot.py)")
    args = parser.parse_args()
    fake, base = start_fake()
    figures = []
    try:
        rows = []
        for size in args.sizes:
            for processes in args.processes:
                reset_database(args.database_url)
                trigger_seconds, sample = seed_and_trigger(args.database_url, size)
                sent = run_senders(args.database_url, base, processes)
                assert sent["sent"] == size, sent
                dispatcher_rate = size / sent["seconds"]
                bare_rate = bare_client(base, sample, size)
                figures.append(
                    {
                        "size": size,
                        "processes": processes,
                        "dispatcher": dispatcher_rate,
                        "bare": bare_rate,
                        "rss_peak_mib": sent["rss_peak_kib"] / 1024,
                    }
                )
                rows.append(
                    f"| {size:,} | {processes} | {trigger_seconds:.2f} | {dispatcher_rate:,.0f} "
                    f"| {bare_rate:,.0f} | {dispatcher_rate / bare_rate:.2f} "
                    f"| {sent['rss_peak_kib'] / 1024:.0f} | {sent['rss_start_kib'] / 1024:.0f} |"
                )
                print(rows[-1], file=sys.stderr, flush=True)
        print(
            "| subscribers | sending processes | trigger (s) | dispatcher msg/s "
            "| bare client msg/s | ratio | peak RSS per sender (MiB) | RSS at start (MiB) |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print("\n".join(rows))
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1))
    finally:
        fake.terminate()
        fake.wait(10)


if __name__ == "__main__":
    main()
