"""Signed tokens for links in emails: one salt per purpose, rotating keys.

A confirm token carries the subscriber's random ``public_id`` and the
subscription round it was issued in, and expires after ``CONFIRM_MAX_AGE``.
An unsubscribe token carries the ``public_id`` only and never expires: an
old digest must always let its reader leave. Neither holds a row id.

An unsubscribe token is ``<public_id>.<signature>``: itsdangerous's
``Signer`` over the id itself, made once per copy of every digest. The
first tokens were a ``URLSafeSerializer``'s (the id as base64 JSON, with
another salt); they cost the digest bench about a tenth of its sending CPU
(the JSON, a zlib attempt, base64), and links that carry them are still read.
Its HMAC is keyed once (``_KeyedSigner``): itsdangerous derives the key and
sets up the HMAC again for every token.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from flask import current_app
from itsdangerous import (
    BadData,
    SignatureExpired,
    Signer,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_encode, want_bytes

CONFIRM_SALT = "newsletter.confirm.v1"
UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v2"
FIRST_UNSUBSCRIBE_SALT = "newsletter.unsubscribe.v1"  # the serializer's tokens, read only


# Whom a digest test copy's unsubscribe link names: no subscriber (public ids are 16
# random characters), so following it unsubscribes nobody, and the page says so.
TEST_COPY_READER = "test-copy"


class TokenError(Exception):
    """A token that cannot be used; ``expired`` tells a stale one from a bad one."""

    def __init__(
        self, expired: bool = False, public_id: str | None = None, round: int | None = None
    ) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired
        self.public_id = public_id
        self.round = round  # an expired confirm link's: dead once the reader left since


@dataclass(frozen=True)
class ConfirmClaim:
    """What a valid confirm token says."""

    public_id: str
    round: int


class _KeyedSigner(Signer):
    """itsdangerous's ``Signer``, its signing HMAC keyed once and copied per token.

    The same tokens, byte for byte: only the work of making each one is
    shared. A digest signs one per copy, and deriving the key and keying the
    HMAC again was half of each signature's cost. Reading is itsdangerous's
    own (every key, retired ones included).
    """

    def __init__(self, secret_keys: list[str], salt: str) -> None:
        super().__init__(secret_keys, salt=salt)
        self._keyed = hmac.new(self.derive_key(), digestmod=self.digest_method)

    def get_signature(self, value: str | bytes) -> bytes:
        """The signature of ``value`` with the newest key, as ``Signer`` makes it."""
        mac = self._keyed.copy()
        mac.update(want_bytes(value))
        return base64_encode(mac.digest())


class Tokens:
    """Makes and reads the tokens of every purpose with the current and retired keys."""

    def __init__(self, secret_key: str, fallbacks: list[str], confirm_max_age: int) -> None:
        # itsdangerous signs with the last key and accepts all of them.
        keys = [*reversed(fallbacks), secret_key]
        self._confirm = URLSafeTimedSerializer(keys, salt=CONFIRM_SALT)
        self._unsubscribe = _KeyedSigner(keys, salt=UNSUBSCRIBE_SALT)
        self._first_unsubscribe = URLSafeSerializer(keys, salt=FIRST_UNSUBSCRIBE_SALT)
        self._max_age = confirm_max_age

    def confirm_token(self, public_id: str, round: int) -> str:
        """A confirm token for this subscriber's current round."""
        return self._confirm.dumps([public_id, round])

    def read_confirm(self, token: str) -> ConfirmClaim:
        """The claim of a confirm token, or ``TokenError``."""
        try:
            payload = self._confirm.loads(token, max_age=self._max_age)
        except SignatureExpired as exc:
            # The signature is good, only old: say whose it was so a new link can be offered.
            try:
                claim = _confirm_payload(self._confirm.load_payload(exc.payload or b""))
            except BadData:
                claim = None
            public_id, round = claim if claim else (None, None)
            raise TokenError(expired=True, public_id=public_id, round=round) from None
        except BadData:
            raise TokenError() from None
        claim = _confirm_payload(payload)
        if claim is None:
            raise TokenError()
        return ConfirmClaim(*claim)

    def unsubscribe_token(self, public_id: str) -> str:
        """A lasting unsubscribe token for this subscriber."""
        return self._unsubscribe.sign(public_id).decode("utf-8")

    def read_unsubscribe(self, token: str) -> str:
        """The ``public_id`` of an unsubscribe token (either kind), or ``TokenError``."""
        try:
            return self._unsubscribe.unsign(token).decode("utf-8")
        except (BadData, UnicodeError):
            pass
        try:
            payload = self._first_unsubscribe.loads(token)
        except BadData:
            raise TokenError() from None
        if not isinstance(payload, str):
            raise TokenError()
        return payload


def _confirm_payload(payload: object) -> tuple[str, int] | None:
    if (
        isinstance(payload, list)
        and len(payload) == 2
        and isinstance(payload[0], str)
        and isinstance(payload[1], int)
    ):
        return payload[0], payload[1]
    return None


def current_tokens() -> Tokens:
    """The ``Tokens`` of the running app, made once from its keys."""
    return current_app.extensions["newsletter.tokens"]
