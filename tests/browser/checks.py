"""Checks run on every page and state: axe-core's accessibility rules, and screenshots."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
SIZES = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}

_RUN_AXE = """async () => {
  const result = await axe.run(document, {resultTypes: ["violations"]});
  return result.violations
    .filter(v => v.impact === "serious" || v.impact === "critical")
    .map(v => {
      const where = v.nodes.map(n => n.target.join(" ")).join(", ");
      return `${v.impact} ${v.id}: ${v.help} at ${where}`;
    });
}"""


def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    return page.evaluate(_RUN_AXE)


def assert_accessible(page: Page) -> None:
    """No serious or critical accessibility violation, at phone and desktop widths."""
    original = page.viewport_size
    try:
        for size in SIZES.values():
            page.set_viewport_size(size)
            assert serious_violations(page) == [], page.url
    finally:
        if original:
            page.set_viewport_size(original)


def screenshots(page: Page, name: str, element: str | None = None) -> list[Path]:
    """Write ``name``-phone.png and ``name``-desktop.png (of ``element`` if given)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    written = []
    try:
        for label, size in SIZES.items():
            page.set_viewport_size(size)
            path = SHOTS / f"{name}-{label}.png"
            if element:
                page.locator(element).screenshot(path=path, animations="disabled")
            else:
                page.screenshot(path=path, full_page=True, animations="disabled")
            written.append(path)
    finally:
        if original:
            page.set_viewport_size(original)
    return written


def check_state(page: Page, name: str, element: str | None = None) -> None:
    """The accessibility check and the screenshots of one page or state."""
    assert_accessible(page)
    for path in screenshots(page, name, element):
        assert path.stat().st_size > 0
