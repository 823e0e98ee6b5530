"""Benchmark: signup throughput and latency of the real service against a bare-insert floor.

    .venv/bin/python bench/signup.py [--duration 15] [--warmup 3] [--runs 2]
        [--connections 16] [--provider postmark|outbox] [--dispatch process|threads|off]
        [--database-url sqlite postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_signup]
        [--python-load] [--profile DIR] [--json FILE]

For each database and each run, on a freshly prepared database (SQLite: a new
file; PostgreSQL: the public schema **dropped and recreated**), migrated with
the service's migrations (``bench/schema.py``), it starts in turn, each under gunicorn with
``gunicorn.conf.py`` (WEB_CONCURRENCY=2, WEB_THREADS=4) on a free port of
127.0.0.1:

- ours: ``wsgi:app``, RATELIMIT_ENABLED=false, our Postmark provider to
  ``bench/fake_provider.py`` (``--provider outbox``: .eml files in a temporary
  folder), dispatching as in production (``--dispatch process``: one
  dispatcher process beside the workers; it sends the confirmation emails the
  signups queue, on the same CPUs);
- the floor: ``bench/floor_app.py``, which only inserts the address into
  ``floor_signups`` of the same database.

Each gets a warm-up then a measured period of 16 keep-alive connections
posting distinct addresses as JSON to ``/subscribe`` (wrk with
``bench/signup.lua`` when wrk is installed, else a Python load generator).
The order alternates between runs. Errors are connection errors, timeouts and
answers of 400 and up (the Python load generator: any answer other than 202).
With ``--runs`` above 1 it ends with each database's median ratio and p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # the service (for its migrations), the bench

import fake_provider  # noqa: E402
from procfs import children, machine_busy_seconds, process_cpu_seconds  # noqa: E402
from spy import record_stacks  # noqa: E402
from spy import require as require_py_spy  # noqa: E402

ROOT = HERE.parent
BIN = Path(sys.executable).parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_signup"


def prepare_database(url: str) -> None:
    """Empty schema, the service's migrations, the floor's table."""
    from schema import fresh_schema

    fresh_schema(url)
    subprocess.run(
        [sys.executable, str(HERE / "floor_app.py")],
        cwd=ROOT,
        env={**os.environ, "FLOOR_DATABASE_URL": url},
        check=True,
        capture_output=True,
    )


def count_rows(url: str, table: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        count = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
    engine.dispose()
    return count


class Server:
    """One gunicorn, same settings for both apps; stopped with SIGTERM.

    ``code``: the checkout whose service and ``gunicorn.conf.py`` run (this one by
    default; ``bench/signup_timing.py`` runs another's).
    """

    def __init__(
        self,
        app: str,
        url: str,
        tmp: Path,
        dispatch: str = "process",
        provider: str = "",
        code: Path = ROOT,
    ) -> None:
        self.port = fake_provider.free_port()
        env = {
            **os.environ,
            "BIND": f"127.0.0.1:{self.port}",
            "WEB_CONCURRENCY": "2",
            "WEB_THREADS": "4",
            "PROMETHEUS_MULTIPROC_DIR": str(tempfile.mkdtemp(dir=tmp, prefix="metrics-")),
        }
        if app == "ours":
            target = ["wsgi:app"]
            env |= {
                "DATABASE_URL": url,
                "SECRET_KEY": "bench",
                "RATELIMIT_ENABLED": "false",
                "DISPATCH_IN_PROCESS": "false" if dispatch == "off" else "true",
                "DISPATCH_PROCESS": "true" if dispatch == "process" else "false",
            }
            if provider:  # a local fake of Postmark's batch API, as in production
                env |= {
                    "EMAIL_PROVIDER": "postmark",
                    "POSTMARK_API_URL": provider,
                    "POSTMARK_SERVER_TOKEN": "bench",
                }
            else:  # the embedded default: one .eml file per message
                env |= {
                    "EMAIL_PROVIDER": "outbox",
                    "OUTBOX_DIR": str(tempfile.mkdtemp(dir=tmp, prefix="outbox-")),
                }
        else:
            target = ["--pythonpath", str(HERE), "floor_app:app"]
            # Same gunicorn settings, but no dispatcher process: the floor sends nothing
            # (and floor_app is not an app the dispatcher process could import).
            env |= {"FLOOR_DATABASE_URL": url, "DISPATCH_PROCESS": "false"}
        self.log = open(tmp / f"gunicorn-{app}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", str(code / "gunicorn.conf.py"), *target],
            cwd=code,
            env=env,
            stdout=subprocess.DEVNULL,  # the access log: written, as in production, then dropped
            stderr=self.log,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /healthz in 30 s")

    def workers(self) -> list[int]:
        """gunicorn's workers (not the DISPATCH_PROCESS dispatcher beside them)."""
        return [pid for pid in children(self.proc.pid) if _dispatcher_index(pid) is None]

    def dispatchers(self) -> dict[str, int]:
        """The dispatcher processes gunicorn runs, by name: ``dispatcher``, then ``dispatcher 1``...

        The INDEX each was started with ends its command line; on PostgreSQL
        the second (1) sends digests only, by default.
        """
        found = {}
        for pid in children(self.proc.pid):
            index = _dispatcher_index(pid)
            if index is not None:
                found[f"dispatcher {index}" if index else "dispatcher"] = pid
        return dict(sorted(found.items()))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def _dispatcher_index(pid: int) -> int | None:
    """The INDEX gunicorn.conf.py started dispatcher process ``pid`` with; None if not one."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except FileNotFoundError:  # it ended while we looked
        return None
    return int(argv[-1]) if b"newsletter.delivery.dispatch_process" in argv else None


def load_wrk(port: int, seconds: float, connections: int, prefix: str) -> dict:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "--timeout",
            "5s",
            "-s",
            str(HERE / "signup.lua"),
            f"http://127.0.0.1:{port}",
            "--",
            prefix,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    raw = json.loads(out.strip().splitlines()[-1])
    errors = sum(raw[k] for k in raw if k.startswith("errors_"))
    return {
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
        "tool": "wrk",
    }


def load_python(port: int, seconds: float, connections: int, prefix: str) -> dict:
    """The fallback: one thread per keep-alive connection, every request's latency kept."""
    latencies: list[list[float]] = [[] for _ in range(connections)]
    errors = [0] * connections
    start = time.perf_counter()
    stop_at = start + seconds

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        i = 0
        while (began := time.perf_counter()) < stop_at:
            i += 1
            body = json.dumps({"email": f"{prefix}-{n}-{i}@example.com"})
            try:
                conn.request("POST", "/subscribe", body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != 202:
                    errors[n] += 1
            except OSError:
                errors[n] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                continue
            latencies[n].append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    flat = sorted(x for per in latencies for x in per)
    done = len(flat) + sum(errors)
    return {
        "requests": done,
        "rps": done / elapsed,
        "p50_ms": flat[len(flat) // 2] * 1000 if flat else float("nan"),
        "p99_ms": flat[int(len(flat) * 0.99)] * 1000 if flat else float("nan"),
        "errors": sum(errors),
        "tool": "python",
    }


def count_sent(url: str) -> tuple[int, int]:
    """Deliveries sent, and deliveries in all, once ours has stopped."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        sent, total = conn.execute(
            text("SELECT count(*) FILTER (WHERE status = 'sent'), count(*) FROM deliveries")
        ).one()
    engine.dispose()
    return sent, total


def cpu_per_request(
    watched: dict[str, int], before: dict[str, float], busy: float, started: float, requests: int
) -> str:
    """Each watched process's CPU per request in µs, the machine's, and how many CPUs were busy."""
    per_request = {
        name: (process_cpu_seconds(pid) - before[name]) * 1e6 / max(requests, 1)
        for name, pid in watched.items()
    }
    machine = machine_busy_seconds() - busy
    parts = [f"{name} {us:,.0f}" for name, us in per_request.items()]
    parts.append(f"machine {machine * 1e6 / max(requests, 1):,.0f}")
    return f"{', '.join(parts)} ({machine / (time.monotonic() - started):.2f} CPUs busy)"


def measure(app: str, url: str, tmp: Path, args: argparse.Namespace, tag: str) -> dict:
    load = load_wrk if shutil.which("wrk") and not args.python_load else load_python
    fake = None
    provider = ""
    if app == "ours" and args.provider == "postmark":
        fake, provider = fake_provider.start()
    server = Server(app, url, tmp, args.dispatch, provider)
    try:
        load(server.port, args.warmup, args.connections, f"warm-{tag}-{app}")
        workers, dispatchers = server.workers(), server.dispatchers()
        spies = []
        if args.profile:
            folder = Path(args.profile)
            spies.append(record_stacks(workers[0], folder / f"{tag}-{app}.txt", args.duration))
            for name, pid in dispatchers.items():
                path = folder / f"{tag}-{app}-{name.replace(' ', '-')}.txt"
                spies.append(record_stacks(pid, path, args.duration))
        watched = {f"worker {n + 1}": pid for n, pid in enumerate(workers)}
        watched.update(dispatchers)
        if fake is not None:
            watched["fake"] = fake.pid
        before = {name: process_cpu_seconds(pid) for name, pid in watched.items()}
        busy, started = machine_busy_seconds(), time.monotonic()
        result = load(server.port, args.duration, args.connections, f"{tag}-{app}")
        result["cpu"] = cpu_per_request(watched, before, busy, started, result["requests"])
        for spy in spies:
            spy.wait()
    finally:
        server.stop()
        if fake is not None:
            fake.terminate()
            fake.wait()
    table = "subscribers" if app == "ours" else "floor_signups"
    result["rows"] = count_rows(url, table)
    if app == "ours":
        result["sent"], result["deliveries"] = count_sent(url)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument(
        "--database-url",
        nargs="+",
        default=["sqlite", DEFAULT_PG],
        help="'sqlite' (a fresh file per run) and/or SQLAlchemy URLs",
    )
    parser.add_argument(
        "--dispatch",
        choices=["process", "threads", "off"],
        default="process",
        help="process: the default under gunicorn, one dispatcher process beside the "
        "workers; threads: DISPATCH_PROCESS=false, a dispatcher thread in each worker; "
        "off: a diagnostic, nothing sent during the run",
    )
    parser.add_argument(
        "--provider",
        choices=["postmark", "outbox"],
        default="postmark",
        help="postmark: our Postmark provider to bench/fake_provider.py (production shape); "
        "outbox: the embedded default, one .eml file per message",
    )
    parser.add_argument("--python-load", action="store_true", help="skip wrk even if installed")
    parser.add_argument("--profile", metavar="DIR", help="py-spy one worker of each server")
    parser.add_argument("--json", metavar="FILE", help="also write every result here")
    args = parser.parse_args()
    if args.profile:
        require_py_spy()
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    results = []
    print(
        "| database | run | ours req/s | floor req/s | ratio | ours p50 / p99 (ms) "
        "| floor p50 / p99 (ms) | errors ours / floor | load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="bench-signup-") as tmp_name:
        tmp = Path(tmp_name)
        for url_arg in args.database_url:
            for run in range(1, args.runs + 1):
                url = url_arg
                if url_arg == "sqlite":
                    url = f"sqlite:///{tmp / f'signup-{run}.db'}"
                prepare_database(url)
                tag = f"{url.split(':')[0].split('+')[0]}-{run}"
                order = ("ours", "floor") if run % 2 else ("floor", "ours")
                measured = {app: measure(app, url, tmp, args, tag) for app in order}
                ours, floor = measured["ours"], measured["floor"]
                results.append({"database": tag.rsplit("-", 1)[0], "run": run, **measured})
                print(
                    f"| {tag.rsplit('-', 1)[0]} | {run} | {ours['rps']:,.0f} | {floor['rps']:,.0f} "
                    f"| {ours['rps'] / floor['rps']:.2f} "
                    f"| {ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} "
                    f"| {floor['p50_ms']:.1f} / {floor['p99_ms']:.1f} "
                    f"| {ours['errors']} / {floor['errors']} | {ours['tool']} |",
                    flush=True,
                )
                print(
                    f"<!-- rows after the run: subscribers {ours['rows']:,} for "
                    f"{ours['requests']:,} measured requests; floor_signups {floor['rows']:,} "
                    f"for {floor['requests']:,}; confirmations sent {ours['sent']:,} of "
                    f"{ours['deliveries']:,} queued ({args.provider}); "
                    f"order {' then '.join(order)} -->",
                    flush=True,
                )
                print(
                    f"<!-- CPU µs per request: ours {ours['cpu']}; floor {floor['cpu']} -->",
                    flush=True,
                )
    if args.runs > 1:
        print_medians(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def print_medians(results: list[dict]) -> None:
    """Per database: the median ratio and ours' median p99 over its runs, with their ranges."""
    print()
    print("| database | runs | ratio, median | ratio, range | ours p99 (ms), median | p99, range |")
    print("|---|---:|---:|---:|---:|---:|")
    for database in dict.fromkeys(r["database"] for r in results):
        runs = [r for r in results if r["database"] == database]
        ratios = [r["ours"]["rps"] / r["floor"]["rps"] for r in runs]
        p99s = [r["ours"]["p99_ms"] for r in runs]
        print(
            f"| {database} | {len(runs)} | {median(ratios):.2f} "
            f"| {min(ratios):.2f}-{max(ratios):.2f} | {median(p99s):.1f} "
            f"| {min(p99s):.1f}-{max(p99s):.1f} |"
        )


if __name__ == "__main__":
    main()
