"""The embedded default provider: one ``.eml`` file per message, in a folder."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path

from .base import Message, Outcome, ProviderConfigError, SendResult, ascii_address
from .mime import build_mime

log = logging.getLogger(__name__)


class OutboxProvider:
    """Writes each message as a real MIME file a developer can open."""

    name = "outbox"
    max_batch = 500

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, no permission: said at start, in one line
            raise ProviderConfigError(
                f"OUTBOX_DIR {self.directory} cannot be used as a folder: {exc.strerror}"
            ) from None

    def forget(self, *addresses: str) -> int:
        """Delete every message written to any of ``addresses`` (an erasure); how many went."""
        wanted = {ascii_address(address).lower() for address in addresses}
        forgotten = 0
        for path in self.directory.glob("*.eml"):
            try:
                with path.open("rb") as file:
                    headers = BytesHeaderParser(policy=default).parse(file)
                if (headers["To"] or "").strip().lower() in wanted:
                    path.unlink()
                    forgotten += 1
            except (OSError, ValueError):  # gone meanwhile, or not ours to read
                continue
        return forgotten

    def send_batch(self, messages: Sequence[Message]) -> list[SendResult]:
        """Write every message atomically; a file that exists was fully written."""
        results = []
        for message in messages:
            mime = build_mime(message)
            path = self.directory / f"{message.key}.eml"
            partial = path.with_suffix(".eml.part")
            try:
                partial.write_bytes(mime.as_bytes())
                os.replace(partial, path)
            except OSError as exc:
                results.append(SendResult(Outcome.TRANSIENT, error=f"outbox write failed: {exc}"))
                continue
            if message.action_url:
                # The development default: the link is logged so it can be clicked.
                extra = {"unmasked": True}
                log.info(
                    "wrote %s: %s -> %s",
                    path.name,
                    message.subject,
                    message.action_url,
                    extra=extra,
                )
            results.append(SendResult(Outcome.SENT, provider_id=mime["Message-ID"]))
        return results
