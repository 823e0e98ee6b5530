"""py-spy on a bench process: raw collapsed stacks, 200 samples a second, without pausing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")  # pip install -r bench/requirements.txt


def require() -> None:
    """Stop the bench now, saying why, when py-spy is not installed (``--profile``)."""
    if not PY_SPY.exists():  # else the bench fails later, as a sender or server that died
        raise SystemExit(f"--profile needs {PY_SPY}: pip install -r bench/requirements.txt")


def record_stacks(pid: int, path: Path | str, seconds: float | None = None) -> subprocess.Popen:
    """Sample ``pid`` into ``path`` for ``seconds``, or until sent SIGINT (then it writes)."""
    duration = ["-d", str(int(seconds))] if seconds is not None else []
    command = [str(PY_SPY), "record", "-p", str(pid), *duration, "-r", "200", "--nonblocking"]
    return subprocess.Popen(
        [*command, "--format", "raw", "-o", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
