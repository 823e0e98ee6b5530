"""Benchmark: where one sender's time goes in a digest, phase by phase, against another checkout.

    .venv/bin/python bench/phases.py [--sizes 100000] [--rounds 3] [--against DIR]
        [--digests K] [--database-url URL]

For each size it resets the database (PostgreSQL: the public schema
**dropped and recreated**), inserts N confirmed subscribers and three posts,
triggers the digest, then sends it with one ``dispatch_pass`` in one thread
(the dispatcher process's first thread, alone) through our Postmark provider
to ``bench/fake_provider.py``. Each phase of every batch is timed, in
microseconds per message, as wall time and as the sending thread's CPU: the
claim, rendering, the provider's call, recording its answers, marking the
digest sending and settling it.

``--against DIR``: a checkout of another commit (``git worktree add
/tmp/before REV``) runs alternately with this one, round by round, on the
same database and fake, each first every other round: the baseline from the
same run. Each run is a fresh process that imports the service from its
checkout (this file's ``bench/digest.py`` seeds, with that checkout's
models). A phase a checkout does not have shows ``-``. Ends with each
checkout's medians per size. The machine's speed swings by a sixth to a
third between runs a minute apart: a change worth a few percent needs many
rounds, or a microbenchmark of its own.

``--digests K``: each process sends K digests of the same size one after
another (three posts added and a digest triggered between them), one row each:
the first pays for what a fresh process does once (the statements' first
compilation, the digest's shared body), the later ones show a dispatcher
that has sent before, as a long-running one has. Since the thirteenth
session the process boots as the dispatcher process does (mappers
configured, templates compiled: ``newsletter/startup.py``) and opens the
connection its polls would keep before the first digest; a checkout without
``newsletter/startup.py`` only freezes its heap.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from statistics import median

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DB = "postgresql+psycopg://postgres@127.0.0.1:5432/newsletter_bench_digest"
# (label, module under newsletter.delivery, functions): what dispatch_pass calls, each
# batch (settle: as the pass ends; before 2026-12-06, after each batch, marking included).
# Of several functions, the first the checkout has. Since 2026-12-07 record and
# mark_sending write, and the dispatcher commits both, untimed; before, each committed.
PHASES = (
    ("claim", "ledger", ("claim",)),
    ("render", "dispatcher", ("render_batch",)),
    ("send", "dispatcher", ("_send",)),
    ("record", "ledger", ("record",)),
    ("mark sending", "dispatcher", ("mark_sending",)),
    ("settle", "dispatcher", ("settle",)),
)


def timed(spent: dict[str, list[float]], label: str, function: Callable) -> Callable:
    """``function``, adding its wall and thread CPU seconds to ``spent[label]``."""

    def run(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[label][0] += time.perf_counter() - wall
            spent[label][1] += time.thread_time() - cpu

    return run


def child(code: str, size: int, url: str, fake: str, digests: int) -> None:
    """One run in this process: seed, send ``digests`` digests with phases timed, print JSON."""
    sys.path.insert(0, code)
    import config
    import newsletter  # the checkout's, imported before bench/digest.py's own

    sys.path.insert(1, str(HERE))
    import digest  # it puts this checkout first on sys.path: the checkout's goes first again
    from schema import fresh_schema

    sys.path.insert(0, code)
    for module in (newsletter, config):
        assert Path(module.__file__ or "").is_relative_to(code), module.__file__
    from sqlalchemy import text

    from newsletter import create_app
    from newsletter.delivery import dispatcher, ledger
    from newsletter.digests.service import create_digest
    from newsletter.extensions import db
    from newsletter.heap import freeze_startup_heap

    fresh_schema(url)
    digest.seed(url, size)
    digest.trigger(url)
    os.environ.update(digest.sending_env(url, fake, 1))
    app = create_app()
    try:  # as the dispatcher process boots (a commit before the thirteenth session: no warm-up)
        from newsletter.startup import finish_startup
    except ImportError:
        freeze_startup_heap()
    else:
        finish_startup(app)
    with app.app_context():  # the pooled connection the dispatcher process's polls keep
        db.session.execute(text("SELECT 1"))
        db.session.commit()
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    modules = {"ledger": ledger, "dispatcher": dispatcher}
    for label, module, names in PHASES:
        name = next((n for n in names if hasattr(modules[module], n)), None)
        if name is not None:
            setattr(modules[module], name, timed(spent, label, getattr(modules[module], name)))
    runs = []
    for number in range(digests):
        if number:  # the next digest, to the same readers, in this same (warm) process
            with app.app_context():
                digest.add_posts(number)  # as long as the first's: the same copies to send
                db.session.commit()
                create_digest(db.session)
                db.session.remove()
        spent.clear()
        with app.app_context():
            wall, cpu = time.perf_counter(), time.thread_time()
            stats = dispatcher.dispatch_pass()
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            db.session.remove()
        assert stats.outcomes.get("sent") == size, stats.outcomes
        phases = {label: list(spent[label]) for label, _, _ in PHASES if label in spent}
        runs.append({"seconds": wall, "cpu": cpu, "phases": phases})
    print(json.dumps(runs))


def run_once(code: Path, size: int, url: str, fake: str, digests: int) -> list[dict]:
    """One run of ``code``'s service in a fresh process: each digest's figures."""
    run = subprocess.run(
        [sys.executable, __file__, "--child", str(code), str(size), url, fake, str(digests)],
        capture_output=True,
        text=True,
    )
    if run.returncode != 0:
        raise RuntimeError(f"a run of {code} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def commit_of(code: Path) -> str:
    """The short commit ``code`` has checked out (with ``+`` when it has changes)."""
    git = ["git", "-C", str(code)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], text=True, capture_output=True
    ).stdout.strip()
    return commit.stdout.strip() + ("+" if dirty else "")


def row(name: str, size: int, figures: dict) -> str:
    """One table row: per phase ``wall / CPU`` in µs a message."""
    per = 1e6 / size
    cells = []
    for label, _, _ in PHASES:
        spent = figures["phases"].get(label)
        cells.append(f"{spent[0] * per:.1f} / {spent[1] * per:.1f}" if spent else "-")
    return (
        f"| {name} | {size:,} | {figures['seconds']:.2f} | {size / figures['seconds']:,.0f} "
        f"| {' | '.join(cells)} | {figures['cpu'] * per:.1f} |"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        code, size, url, fake, digests = sys.argv[2:7]
        child(code, int(size), url, fake, int(digests))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another checkout, run alternately")
    parser.add_argument(
        "--digests", type=int, default=1, help="digests sent one after another by each process"
    )
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    import fake_provider

    checkouts = [ROOT, *([args.against.resolve()] if args.against else [])]
    names = {code: commit_of(code) for code in checkouts}
    fake, base = fake_provider.start()
    header = " | ".join(f"{label} µs/msg, wall / CPU" for label, _, _ in PHASES)
    print(f"| commit | subscribers | seconds | msg/s | {header} | CPU µs/msg, all |")
    print("|---|---:|---:|---:|" + "---:|" * (len(PHASES) + 1), flush=True)
    results: dict[tuple[str, int], list[dict]] = defaultdict(list)
    try:
        for round_ in range(args.rounds):
            # Each goes first every other round: the machine drifts within a round too.
            for code in checkouts if round_ % 2 == 0 else checkouts[::-1]:
                for size in args.sizes:
                    runs = run_once(code, size, args.database_url, base, args.digests)
                    for number, figures in enumerate(runs, 1):
                        name = names[code] + (f", digest {number}" if args.digests > 1 else "")
                        results[name, size].append(figures)
                        print(row(name, size, figures), flush=True)
    finally:
        fake.terminate()
        fake.wait(10)
    print(
        "\n| commit | subscribers | runs | seconds, median | msg/s, median | CPU µs/msg, median |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for (name, size), runs in results.items():
        seconds = median(r["seconds"] for r in runs)
        cpu = median(r["cpu"] for r in runs) * 1e6 / size
        print(
            f"| {name} | {size:,} | {len(runs)} | {seconds:.2f} "
            f"| {size / seconds:,.0f} | {cpu:.1f} |"
        )


if __name__ == "__main__":
    main()
