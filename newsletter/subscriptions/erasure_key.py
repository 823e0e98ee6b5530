"""The key of erased addresses' hashes, kept in the database wrapped under ``SECRET_KEY``.

Keyed from ``SECRET_KEY`` itself, the hashes that keep an erased address
stopped were all lost the day the key was rotated. The key now sits in
``wrapped_keys``, encrypted (Fernet) under a key derived from ``SECRET_KEY``:
a copy of the database alone still cannot test an address against the
hashes, and a process that reads it with the old key in
``SECRET_KEY_FALLBACKS`` wraps it again under the new one, so the old key can
then be retired. The first key stored is random, unless hashes were made
before it was kept: then it is theirs (derived from ``SECRET_KEY``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask
from sqlalchemy import Connection, select, update

from ..db_helpers import insert_ignoring_conflicts
from ..errors import Misconfigured
from ..extensions import db
from ..models import Erasure, WrappedKey

log = logging.getLogger(__name__)
NAME = "erasure"
_CACHE = "newsletter.erasure_key"


class UnreadableErasureKey(Misconfigured):
    """The key is wrapped under a ``SECRET_KEY`` this host has neither as its own nor retired.

    Nothing that reads erased addresses' hashes may go on: an import would
    bring back, confirmed, readers who left and were erased (a host left out
    of a key rotation did), and a signup could restart mail to an address
    erased after a bounce or complaint.
    """

    def __init__(self) -> None:
        super().__init__(
            "the key of erased addresses' hashes is wrapped under a SECRET_KEY that is "
            "neither SECRET_KEY nor in SECRET_KEY_FALLBACKS: signups, imports and webhooks "
            "are refused until this host has the key the others use (list the old one in "
            "SECRET_KEY_FALLBACKS)"
        )


def _derived(secret: str, purpose: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def _wrapping(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived(secret, b"newsletter.wrapped-keys")))


def erasure_key(app: Flask) -> bytes:
    """The key, read once per app and kept in memory; stored, or wrapped anew, on that read.

    Read on its own connection: callers ask for it before their own
    transaction writes (a SQLite writer would otherwise wait on itself).
    """
    key = app.extensions.get(_CACHE)
    if key is None:
        key = app.extensions[_CACHE] = _load(app)
    return key


def _load(app: Flask) -> bytes:
    secret, fallbacks = app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"]
    current = _wrapping(secret)
    with app.app_context(), db.engine.begin() as connection:
        wrapped = connection.scalar(select(WrappedKey.wrapped).where(WrappedKey.name == NAME))
        if wrapped is None:
            return _keep_first(connection, secret, fallbacks, current)
        keys = MultiFernet([current, *(_wrapping(old) for old in fallbacks)])
        try:
            key = keys.decrypt(wrapped.encode())
        except InvalidToken:
            raise UnreadableErasureKey() from None
        try:
            current.decrypt(wrapped.encode())
        except InvalidToken:  # wrapped under a retired key: wrap it under this one
            connection.execute(
                update(WrappedKey)
                .where(WrappedKey.name == NAME, WrappedKey.wrapped == wrapped)
                .values(wrapped=keys.rotate(wrapped.encode()).decode())
            )
        return key


def _keep_first(connection: Connection, secret: str, fallbacks: list[str], wrap: Fernet) -> bytes:
    """Store the first key: random, or, with hashes made before it was kept, theirs."""
    if connection.scalar(select(Erasure.email_hash).limit(1)) is None:
        key = secrets.token_bytes(32)
    else:
        key = _derived(secret, b"erasure")  # how the earlier code keyed them
        if fallbacks:
            log.warning(
                "erased addresses' hashes made before this version are taken to be keyed "
                "from SECRET_KEY; if they were made under a key now in SECRET_KEY_FALLBACKS, "
                "start once with that key as SECRET_KEY first"
            )
    connection.execute(
        insert_ignoring_conflicts(connection.engine, WrappedKey, ["name"]).values(
            name=NAME, wrapped=wrap.encrypt(key).decode()
        )
    )
    # Two first starts at once: the key kept is the one stored first.
    wrapped = connection.scalar(select(WrappedKey.wrapped).where(WrappedKey.name == NAME))
    return wrap.decrypt(wrapped.encode())
