"""Benchmark: erasing one address from an outbox of N files, by name against reading every file.

    .venv/bin/python bench/outbox_forget.py [--files 60000]

Fills a temporary outbox with N digest copies (one reader each) through the
real ``OutboxProvider``, then times, in the same run, the erasure of one
address as it was done until 2026-12-07 (every file's headers read, the
baseline) and as ``OutboxProvider.forget`` does it now (the recipient's tag
in the file names).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.providers import Message, Stream
from newsletter.providers.outbox import OutboxProvider


def copy(n: int) -> Message:
    """Reader ``n``'s copy of a short digest."""
    link = f"http://news.example.org/unsubscribe/token-{n}"
    return Message(
        key=f"digest-1-reader{n}",
        to=f"reader{n}@example.com",
        sender="Clinic News <news@clinic.example.org>",
        subject="Clinic News: 2 new posts",
        text=f"New posts.\n\nUnsubscribe: {link}\n",
        html=f'<p>New posts.</p><p><a href="{link}">Unsubscribe</a></p>',
        headers={"List-Unsubscribe": f"<{link}>"},
        stream=Stream.BROADCAST,
    )


def read_every_file(folder: Path, address: str) -> int:
    """The baseline: how the outbox found an address's files before, by their headers."""
    found = 0
    for path in folder.glob("*.eml"):
        with path.open("rb") as file:
            headers = BytesHeaderParser(policy=default).parse(file)
        found += (headers["To"] or "").strip().lower() == address
    return found


def main() -> None:
    """Fill the outbox, then time both ways of finding one reader's file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60_000)
    files = parser.parse_args().files
    with tempfile.TemporaryDirectory() as folder:
        outbox = OutboxProvider(folder)
        for start in range(0, files, 500):
            outbox.send_batch([copy(n) for n in range(start, min(files, start + 500))])
        started = time.perf_counter()
        found = read_every_file(Path(folder), "reader7@example.com")
        baseline = time.perf_counter() - started
        started = time.perf_counter()
        deleted = outbox.forget("reader8@example.com")
        ours = time.perf_counter() - started
    print("| files | every header read (s) | by name (s) | found / deleted |")
    print("|---:|---:|---:|---|")
    print(f"| {files:,} | {baseline:.2f} | {ours:.3f} | {found} / {deleted} |")


if __name__ == "__main__":
    main()
