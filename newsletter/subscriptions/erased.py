"""What is kept of an erased address: a keyed hash, and whether it had bounced or complained."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from ..db_helpers import insert_ignoring_conflicts
from ..models import SUPPRESSED, Erasure, Status, utcnow
from .erasure_key import erasure_key


def email_hash(email: str) -> str:
    """A keyed hash of an address: matches a later import or signup, reveals nothing alone."""
    return email_hasher()(email)


def email_hasher() -> Callable[[str], str]:
    """``email_hash`` with the key looked up once: for hashing many addresses (an import)."""
    key = erasure_key(current_app._get_current_object())  # type: ignore[attr-defined]
    return lambda email: hmac.digest(key, email.encode(), "sha256").hex()


def suppressed_hashes() -> Select[tuple[str]]:
    """The hashes of addresses erased while bounced or complained: never written again."""
    return select(Erasure.email_hash).where(Erasure.prior_status.in_(SUPPRESSED))


def keep_hash(session: Session, digest: str, status: Status) -> None:
    """Keep the hash with ``status``: a new record, or a stop over the one kept.

    A bounce or complaint replaces what was kept (a complaint outranks a
    bounce); any other status only starts a record. Erasure and webhooks about
    a non-subscriber both keep theirs here.
    """
    kept = session.get(Erasure, digest, with_for_update=True)
    if kept is None:
        session.execute(
            insert_ignoring_conflicts(session, Erasure, ["email_hash"]).values(
                email_hash=digest, prior_status=status, erased_at=utcnow()
            )
        )
    elif status in SUPPRESSED and kept.prior_status is not Status.COMPLAINED:
        kept.prior_status = status
        kept.erased_at = utcnow()
