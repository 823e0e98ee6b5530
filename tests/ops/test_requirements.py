"""Every package the service imports is installed by requirements.txt alone.

The tests run with requirements-dev.txt installed, which holds more: an
import of a test-only package in the service would pass every test here and
fail in the image (``pip install -r requirements.txt``). Read statically:
the modules the image copies, their absolute imports, each package's
distribution, against requirements.txt and what it pulls in.
"""

from __future__ import annotations

import ast
import sys
from importlib.metadata import packages_distributions, requires
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
OURS = {"newsletter", "config", "wsgi"}


def service_modules() -> list[Path]:
    """The Python files the image runs (the Dockerfile copies these)."""
    return [
        *(ROOT / name for name in ("config.py", "wsgi.py", "gunicorn.conf.py")),
        *sorted((ROOT / "newsletter").rglob("*.py")),
        *sorted((ROOT / "migrations").rglob("*.py")),
    ]


def imported_packages(path: Path) -> set[str]:
    """The top-level packages ``path`` imports absolutely, the standard library's aside."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - OURS - {"__future__"}


def installed_by(requirements_file: Path) -> set[str]:
    """Every distribution ``pip install -r`` of the file installs: the named ones and theirs."""
    wanted: list[Requirement] = []
    installed: set[str] = set()
    for raw in requirements_file.read_text(encoding="utf-8").splitlines():
        line = raw.split("#")[0].strip()
        if line.startswith("-r "):  # another file, as pip reads it
            installed |= installed_by(requirements_file.parent / line[3:].strip())
        elif line:
            wanted.append(Requirement(line))
    while wanted:
        requirement = wanted.pop()
        name = canonicalize_name(requirement.name)
        if name in installed:
            continue
        installed.add(name)
        for line in requires(requirement.name) or []:
            needed = Requirement(line)
            extras = requirement.extras or {""}
            if needed.marker is None or any(
                needed.marker.evaluate({"extra": extra}) for extra in extras
            ):
                wanted.append(needed)
    return installed


def test_every_package_the_service_imports_comes_with_requirements_txt() -> None:
    installed = installed_by(ROOT / "requirements.txt")
    distributions = packages_distributions()
    missing = {}
    for path in service_modules():
        for package in imported_packages(path):
            names = {canonicalize_name(d) for d in distributions.get(package, [package])}
            if not names & installed:
                missing[f"{path.relative_to(ROOT)}: {package}"] = sorted(names)
    assert not missing, missing


def test_the_check_sees_a_test_only_import(tmp_path: Path) -> None:
    module = tmp_path / "uses_pytest.py"
    module.write_text("import pytest\nfrom newsletter import create_app\nimport os\n")
    assert imported_packages(module) == {"pytest"}
    assert "pytest" not in installed_by(ROOT / "requirements.txt")
    assert "pytest" in installed_by(ROOT / "requirements-dev.txt")
