"""The publisher's website: a second origin whose page embeds the README's snippet.

The snippet is read from the README, so the tests prove the very text
publishers paste. The page is served with a strict Content-Security-Policy: no
inline script or style anywhere, scripts, styles and requests only from the
newsletter service.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parents[2] / "README.md"
DOCUMENTED_ORIGIN = "https://news.example.org"

STYLESHEET = b"""body { margin: 0; font: 17px/1.6 Georgia, serif; color: #222; background: #fff; }
header, main, footer { max-width: 44rem; margin: 0 auto; padding: 1rem; }
header { border-bottom: 1px solid #ddd; }
h1 { font-size: 1.6rem; line-height: 1.25; }
"""


def snippet() -> str:
    """The README's signup box (the html block loading widget.js), as a publisher copies it."""
    blocks = re.findall(r"```html\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    boxes = [block for block in blocks if "widget.js" in block]
    assert boxes, f"no html snippet loading widget.js in {DOCS}"
    return boxes[0]


def page_html(service_url: str) -> str:
    """A blog post with the signup box pointing at ``service_url``."""
    box = snippet().replace(DOCUMENTED_ORIGIN, service_url)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Massage therapy and running form · Example Clinic</title>
<link rel="stylesheet" href="/blog.css">
</head>
<body>
<header><p>Example Clinic · Recent news and events</p></header>
<main>
<article>
<h1>Massage therapy and running form: hip extension</h1>
<p>Runners need both hip flexion and hip extension. This post explains why
extension matters and how massage can help you find it again.</p>
</article>
<aside aria-label="Newsletter">
{box}
</aside>
</main>
<footer><p>Example Clinic</p></footer>
</body>
</html>
"""


class Blog:
    """A WSGI app serving the blog post at ``/`` and its stylesheet at ``/blog.css``."""

    def __init__(self) -> None:
        self.service_url = ""

    def csp(self) -> str:
        """A strict policy: nothing inline; the service is the only other origin."""
        service = self.service_url
        return (
            "default-src 'none'; "
            f"script-src {service}; "
            f"style-src 'self' {service}; "
            f"connect-src {service}; "
            f"form-action {service}; "
            "img-src 'self'; base-uri 'none'; frame-ancestors 'none'"
        )

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ["PATH_INFO"]
        if path == "/":
            body = page_html(self.service_url).encode()
            headers = [
                ("Content-Type", "text/html; charset=utf-8"),
                ("Content-Security-Policy", self.csp()),
            ]
            start_response("200 OK", headers)
            return [body]
        if path == "/blog.css":
            start_response("200 OK", [("Content-Type", "text/css")])
            return [STYLESHEET]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
