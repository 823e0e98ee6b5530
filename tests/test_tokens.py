"""Tokens: one salt per purpose, expiry, key rotation, no row ids inside."""

from __future__ import annotations

import base64
import json
import time

import pytest
from itsdangerous import BadSignature, Signer, URLSafeSerializer

from newsletter.tokens import FIRST_UNSUBSCRIBE_SALT, UNSUBSCRIBE_SALT, TokenError, Tokens


def make(secret="k1", fallbacks=(), max_age=3600) -> Tokens:
    return Tokens(secret, list(fallbacks), max_age)


def test_confirm_token_round_trips_and_holds_only_the_public_id_and_round():
    tokens = make()
    token = tokens.confirm_token("pub-abc", 3)
    claim = tokens.read_confirm(token)
    assert (claim.public_id, claim.round) == ("pub-abc", 3)
    payload = token.split(".")[0]
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert decoded == ["pub-abc", 3]


def test_tampered_token_is_refused():
    tokens = make()
    token = tokens.confirm_token("pub", 0)
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(TokenError) as caught:
        tokens.read_confirm(flipped)
    assert not caught.value.expired


def test_truncated_and_garbage_tokens_are_refused():
    tokens = make()
    token = tokens.confirm_token("pub", 0)
    for bad in (token[:10], "", "....", "not-a-token", token + "x"):
        with pytest.raises(TokenError):
            tokens.read_confirm(bad)


def test_expired_token_says_it_is_expired_and_whose_it_was():
    tokens = make(max_age=1)
    token = tokens.confirm_token("pub-old", 0)
    time.sleep(2.1)
    with pytest.raises(TokenError) as caught:
        tokens.read_confirm(token)
    assert caught.value.expired and caught.value.public_id == "pub-old"


def test_unsubscribe_token_on_the_confirm_purpose_is_refused_and_vice_versa():
    tokens = make()
    with pytest.raises(TokenError):
        tokens.read_confirm(tokens.unsubscribe_token("pub"))
    with pytest.raises(TokenError):
        tokens.read_unsubscribe(tokens.confirm_token("pub", 0))


def test_unsubscribe_token_never_expires():
    tokens = make(max_age=0)
    assert tokens.read_unsubscribe(tokens.unsubscribe_token("pub")) == "pub"


def test_retired_key_in_fallbacks_is_still_accepted_and_new_tokens_use_the_new_key():
    old = make("old-key")
    confirm, unsubscribe = old.confirm_token("p", 1), old.unsubscribe_token("p")
    rotated = make("new-key", fallbacks=["old-key"])
    assert rotated.read_confirm(confirm).public_id == "p"
    assert rotated.read_unsubscribe(unsubscribe) == "p"
    fresh = rotated.confirm_token("p", 1)
    assert make("new-key").read_confirm(fresh).public_id == "p"
    with pytest.raises(TokenError):
        make("old-key").read_confirm(fresh)


def test_key_retired_beyond_its_fallback_is_refused():
    token = make("old-key").confirm_token("p", 0)
    with pytest.raises(TokenError):
        make("new-key").read_confirm(token)


def test_unsubscribe_token_is_the_public_id_and_its_signature():
    token = make().unsubscribe_token("pub-a")
    public_id, signature = token.rsplit(".", 1)
    assert public_id == "pub-a" and len(signature) >= 27  # a SHA-1 HMAC, base64
    with pytest.raises(TokenError):
        make().read_unsubscribe("pub-b." + signature)  # the signature covers the id


def test_unsubscribe_tokens_are_itsdangerous_signer_tokens_of_the_newest_key():
    # Signed with the HMAC keyed once: byte for byte what itsdangerous's Signer makes,
    # so links already in inboxes and links made now are read alike.
    tokens = make("new-key", fallbacks=["old-key"])
    for public_id in ("pub-a", "pub-b", "é-unicode"):
        made = tokens.unsubscribe_token(public_id)
        assert made == Signer(["new-key"], salt=UNSUBSCRIBE_SALT).sign(public_id).decode()
        assert made != Signer(["old-key"], salt=UNSUBSCRIBE_SALT).sign(public_id).decode()


def test_unsubscribe_links_of_the_first_token_format_still_work_through_rotation():
    # Digests sent before the Signer tokens carry the serializer's: they must keep working.
    first = URLSafeSerializer(["old-key"], salt=FIRST_UNSUBSCRIBE_SALT).dumps("pub-a")
    # Pinned as the first code made it (salt "newsletter.unsubscribe.v1"): a drift of the
    # constant or of how old tokens are read would break links already in inboxes.
    assert first == "InB1Yi1hIg.-uKandZNUft-ZVZ5ZjIQbPNexDM"
    assert make("old-key").read_unsubscribe(first) == "pub-a"
    assert make("new-key", fallbacks=["old-key"]).read_unsubscribe(first) == "pub-a"
    with pytest.raises(TokenError):
        make("new-key").read_unsubscribe(first)
    # Neither format's signature passes for the other's salt.
    now = make("k1").unsubscribe_token("pub-a")
    with pytest.raises(BadSignature):  # not merely a payload it cannot parse
        URLSafeSerializer(["k1"], salt=FIRST_UNSUBSCRIBE_SALT).loads(now)
    with pytest.raises(BadSignature):
        Signer(["k1"], salt=UNSUBSCRIBE_SALT).unsign(
            URLSafeSerializer(["k1"], salt=FIRST_UNSUBSCRIBE_SALT).dumps("pub-a")
        )
