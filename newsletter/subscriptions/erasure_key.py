"""The key of erased addresses' hashes, kept in the database wrapped under ``SECRET_KEY``.

Keyed from ``SECRET_KEY`` itself, the hashes that keep an erased address
stopped were all lost the day the key was rotated. The key now sits in
``wrapped_keys``, encrypted (Fernet) under a key derived from ``SECRET_KEY``:
a copy of the database alone still cannot test an address against the
hashes, and a process that starts with the old key in
``SECRET_KEY_FALLBACKS`` wraps it again under the new one, so the old key can
then be retired. The first key stored is the one the hashes were made with
before (derived from ``SECRET_KEY``), so they keep matching.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask
from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from ..db_helpers import insert_ignoring_conflicts
from ..extensions import db
from ..models import WrappedKey

log = logging.getLogger(__name__)
NAME = "erasure"
_CACHE = "newsletter.erasure_key"


def _derived(secret: str, purpose: bytes) -> bytes:
    return hmac.new(secret.encode(), purpose, hashlib.sha256).digest()


def _wrapping(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derived(secret, b"newsletter.wrapped-keys")))


def erasure_key(app: Flask) -> bytes:
    """The key, read once per app (kept in memory); derived from ``SECRET_KEY`` if none is kept."""
    key = app.extensions.get(_CACHE)
    if key is None:
        key = app.extensions[_CACHE] = _load(app, store=False)
    return key


def keep_erasure_key(app: Flask) -> None:
    """At start: store the key if none is, or wrap it again under a new ``SECRET_KEY``.

    Best effort: on a database not migrated yet (or not reachable) the key
    is read on first use instead.
    """
    try:
        app.extensions[_CACHE] = _load(app, store=True)
    except SQLAlchemyError as exc:
        log.debug("erasure key not read at start: %s", type(exc).__name__)


def _load(app: Flask, store: bool) -> bytes:
    secret, fallbacks = app.config["SECRET_KEY"], app.config["SECRET_KEY_FALLBACKS"]
    first = _derived(secret, b"erasure")  # what the hashes were keyed with before
    current = _wrapping(secret)
    with app.app_context(), db.engine.begin() as connection:
        wrapped = connection.scalar(select(WrappedKey.wrapped).where(WrappedKey.name == NAME))
        if wrapped is None:
            if store:
                connection.execute(
                    insert_ignoring_conflicts(db.engine, WrappedKey, ["name"]).values(
                        name=NAME, wrapped=current.encrypt(first).decode()
                    )
                )
            return first
        keys = MultiFernet([current, *(_wrapping(old) for old in fallbacks)])
        try:
            key = keys.decrypt(wrapped.encode())
        except InvalidToken:
            log.error(
                "the key of erased addresses' hashes is wrapped under a SECRET_KEY that is "
                "neither SECRET_KEY nor in SECRET_KEY_FALLBACKS: addresses erased after a "
                "bounce or complaint are not recognised until the old key is listed there"
            )
            return first
        if store:
            try:
                current.decrypt(wrapped.encode())
            except InvalidToken:  # wrapped under a retired key: wrap it under this one
                connection.execute(
                    update(WrappedKey)
                    .where(WrappedKey.name == NAME, WrappedKey.wrapped == wrapped)
                    .values(wrapped=keys.rotate(wrapped.encode()).decode())
                )
        return key
