"""What is kept of an erased address: a keyed hash, and whether it had bounced or complained."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection

from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from ..db_helpers import insert_ignoring_conflicts
from ..driver_sql import fetch_all
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


def left_hashes() -> Select[tuple[str]]:
    """The hashes of addresses erased after they left, bounced or complained: no import
    brings them back (a signup of their own may, by double opt-in, if they only left)."""
    left = (Status.UNSUBSCRIBED, *SUPPRESSED)
    return select(Erasure.email_hash).where(Erasure.prior_status.in_(left))


# ``suppressed_hashes()`` among a list given as one parameter: one statement
# whatever the list's length, run on the driver (see driver_sql.py). The
# statuses are our enum's own constants, never input.
_STOPPED = ", ".join(f"'{status.value}'" for status in SUPPRESSED)
_STOPPED_AMONG = {
    "sqlite": f"SELECT email_hash FROM erasures WHERE prior_status IN ({_STOPPED})"  # noqa: S608
    " AND email_hash IN (SELECT value FROM json_each(?))",
    "postgresql": f"SELECT email_hash FROM erasures WHERE prior_status IN ({_STOPPED})"  # noqa: S608
    " AND email_hash = ANY(%s)",
}


def suppressed_among(connection: Connection, hashes: Collection[str]) -> set[str]:
    """Which of ``hashes`` are in ``suppressed_hashes()``, in one query on the driver."""
    dialect = connection.dialect.name
    listed = json.dumps(list(hashes)) if dialect == "sqlite" else list(hashes)
    return {digest for (digest,) in fetch_all(connection, _STOPPED_AMONG[dialect], [listed])}


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
