"""Plot digest throughput and peak memory against list size from ``digest.py --json``.

.venv/bin/pip install -r bench/requirements.txt
.venv/bin/python bench/plot.py bench/results.json bench/results.png
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

NAMES = {  # digest.py's modes
    "in-process": "{} sender(s)",
    "celery": "{} solo Celery worker(s)",
    "celery-prefork": "1 Celery worker, prefork {}",
}


def main(source: Path, target: Path) -> None:
    """Two panels: msg/s (dispatcher and bare client) and peak RSS, per way of sending."""
    figures = json.loads(source.read_text())
    fig, (rate, memory) = plt.subplots(1, 2, figsize=(12, 6))
    runs = sorted({(f["mode"], f["processes"]) for f in figures})
    for mode, processes in runs:
        rows = sorted(
            (f for f in figures if (f["mode"], f["processes"]) == (mode, processes)),
            key=lambda f: f["size"],
        )
        name = NAMES[mode].format(processes)
        if rows[0].get("digest_processes"):  # gunicorn's default on PostgreSQL (tenth session)
            name += f" + {rows[0]['digest_processes']} for digests"
        sizes = [f["size"] for f in rows]
        rate.plot(sizes, [f["dispatcher"] for f in rows], "o-", label=f"dispatcher, {name}")
        rate.plot(sizes, [f["bare"] for f in rows], "x--", label=f"bare client (beside {name})")
        memory.plot(sizes, [f["rss_peak_mib"] for f in rows], "o-", label=name)
    for axis, label in ((rate, "messages per second"), (memory, "peak RSS per sender (MiB)")):
        axis.set_xscale("log")
        axis.set_xlabel("subscribers")
        axis.set_ylabel(label)
        axis.set_ylim(bottom=0)
    # Below the panels: ten lines' labels would hide the lines themselves.
    rate.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    memory.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15))
    fig.suptitle("Digest fan-out on PostgreSQL, fake provider (bench/digest.py)")
    fig.tight_layout()
    fig.savefig(target, dpi=100)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
