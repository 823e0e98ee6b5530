"""The widget stays small: under 5 KB once minified, as the README promises."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .conftest import ROOT

TERSER = ROOT / "tools" / "browser" / "node_modules" / "terser" / "bin" / "terser"
WIDGET = ROOT / "newsletter" / "static" / "widget.js"
LIMIT = 5 * 1024


def test_widget_is_under_5_kb_minified() -> None:
    node = shutil.which("node")
    if node is None or not TERSER.exists():
        problem = "node or terser missing: run scripts/setup-browser"
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    minified = subprocess.run(
        [node, str(TERSER), str(WIDGET), "--compress", "--mangle"],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    assert 1000 < len(minified) < LIMIT, len(minified)
