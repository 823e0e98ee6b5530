"""Run a snippet in a fresh interpreter from the project folder: nothing imported yet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def printed(program: str, *args: str, env: dict[str, str]) -> str:
    """What ``program`` prints (stripped), run with ``args`` and only ``env`` (plus PATH).

    A failing program fails the test with its stderr.
    """
    result = subprocess.run(
        [sys.executable, "-c", program, *args],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()
