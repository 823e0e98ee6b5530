"""What a page does behind the scenes: console messages and requests."""

from __future__ import annotations

from playwright.sync_api import ConsoleMessage, Page, Request


class Watch:
    """Records a page's console messages and requests from the moment it is made."""

    def __init__(self, page: Page) -> None:
        self.console: list[str] = []
        self.requests: list[Request] = []
        page.on("console", self._on_console)
        page.on("request", self._on_request)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append(f"{message.type}: {message.text}")

    def _on_request(self, request: Request) -> None:
        self.requests.append(request)

    def csp_violations(self) -> list[str]:
        """Console reports of anything the page's Content-Security-Policy blocked."""
        return [line for line in self.console if "Content Security Policy" in line]

    def posts(self, url: str) -> list[Request]:
        """The POST requests sent to ``url``."""
        return [r for r in self.requests if r.method == "POST" and r.url == url]

    def take(self) -> list[str]:
        """The URLs requested since the last call, forgetting them."""
        urls = [r.url for r in self.requests]
        self.requests.clear()
        return urls

    def origins(self) -> set[str]:
        """The scheme://host:port of every http(s) request."""
        return {
            "/".join(r.url.split("/", 3)[:3]) for r in self.requests if r.url.startswith("http")
        }
