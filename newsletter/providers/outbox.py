"""The embedded default provider: one ``.eml`` file per message, in a folder."""

from __future__ import annotations

import hashlib
import logging
import os
import re
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
        """Delete every message written to any of ``addresses`` (an erasure); how many went.

        Found by the recipient's tag in each file's name. Reading every file's
        headers took an erasure 40-70 s in an outbox of 60,000-200,000 files;
        only files written before the tag (no tag in the name) are still read.
        """
        tags = {recipient_tag(address) for address in addresses}
        wanted = {_mailbox(address) for address in addresses}
        forgotten = 0
        for path in list(self.directory.glob("*.eml")):  # listed first: some are renamed
            tag = path.stem.rpartition(".")[2]
            try:
                if _TAG.fullmatch(tag) and "." in path.stem:
                    if tag not in tags:
                        continue
                elif (to := _written_to(path)) not in wanted:
                    # Read once: named as files are now, no later erasure reads it again.
                    path.rename(path.with_name(f"{path.stem}.{recipient_tag(to)}.eml"))
                    continue
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
            path = self.directory / f"{message.key}.{recipient_tag(message.to)}.eml"
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


_TAG = re.compile(r"[0-9a-f]{16}")


def _mailbox(address: str) -> str:
    """An address as the files' ``To`` has it, in one case."""
    try:
        return ascii_address(address).lower()
    except UnicodeError:  # a domain IDNA refuses: kept as given
        return address.lower()


def recipient_tag(address: str) -> str:
    """The tag of a recipient in its files' names: an erasure finds them without reading any."""
    return hashlib.sha256(_mailbox(address).encode()).hexdigest()[:16]


def _written_to(path: Path) -> str:
    """The ``To`` of a file written before names carried a tag."""
    with path.open("rb") as file:
        headers = BytesHeaderParser(policy=default).parse(file)
    return (headers["To"] or "").strip().lower()
