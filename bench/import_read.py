"""How fast the CSV import reads its rows, before any database work.

    .venv/bin/python bench/import_read.py [ROWS]   # 100,000 by default

Reads ``email,name`` lines through ``importer.read_rows`` (decoding, the
layout, address checks), best of 5, and prints rows per second.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.subscriptions import importer


def main() -> None:
    """Print the best of five reads of ROWS generated lines, in rows per second."""
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    body = b"email,name\n" + b"".join(
        f"user{n}@example.com,User {n}\n".encode() for n in range(rows)
    )
    best = float("inf")
    for _ in range(5):
        report = importer.ImportReport()
        started = time.perf_counter()
        read = sum(1 for _ in importer.read_rows(io.BytesIO(body), report))
        best = min(best, time.perf_counter() - started)
    print(f"{read:,} rows read, {read / best:,.0f} rows/s (best of 5)")


if __name__ == "__main__":
    main()
