"""The import's shortcut for plain addresses agrees with ``email_validator`` exactly."""

from __future__ import annotations

import random

import pytest
from email_validator import EmailNotValidError, validate_email

from newsletter.subscriptions.addresses import (
    InvalidAddress,
    lookup_form,
    normalize_email,
    plain_address,
)

PIECES = [
    "a", "Z", "0", "9", "_", "+", "-", ".", "..", "@", "xn--", "--", "é", " ", "\"",
    "localhost", "test", "invalid", "onion", "arpa", "local", "com", "ORG", "123",
    "a" * 63, "b" * 64, "c" * 65, "example", "Ann.Lee", "x-", "-y", "!", "#", "~",
]  # fmt: skip


def candidates(count: int, seed: int = 7) -> list[str]:
    """Addresses put together from awkward pieces, most of them invalid."""
    rng = random.Random(seed)  # noqa: S311 (test data, not a secret)
    out = []
    for _ in range(count):
        local = "".join(rng.choices(PIECES, k=rng.randint(1, 3)))
        count = rng.randint(2, 3)
        labels = ["".join(rng.choices(PIECES, k=rng.randint(1, 2))) for _ in range(count)]
        out.append(f"{local}@{'.'.join(labels)}")
    return out


def test_every_shortcut_answer_is_the_validators_answer():
    taken = 0
    for address in candidates(60_000):
        plain = plain_address(address)
        if plain is None:
            continue
        taken += 1
        try:
            expected = validate_email(address, check_deliverability=False).normalized.lower()
        except EmailNotValidError as exc:
            pytest.fail(f"{address!r}: shortcut accepted, validator said {exc}")
        assert plain == expected, address
    assert taken > 500  # the generator does reach the shortcut


@pytest.mark.parametrize(
    "address",
    [
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@xn--nxasmq6b.com",
        "a@ab--cd.com",
        "a@example.123",
        "a@localhost",
        "a@mail.test",
        "a@b.local",
        f"{'a' * 65}@example.com",
        "ann@exämple.com",
        "a b@example.com",
    ],
)
def test_unusual_addresses_take_the_full_validation(address):
    assert plain_address(address) is None


def test_normalize_is_unchanged_for_plain_and_unusual_addresses():
    assert normalize_email("  Ann.Lee+news@Example.ORG ") == "ann.lee+news@example.org"
    assert normalize_email("ann@ExÄmple.com") == "ann@exämple.com"


def test_a_mailbox_name_over_64_octets_is_refused_for_new_addresses_only():
    """RFC 5321's limit: email-validator checks it in strict mode only, so we do."""
    long_name = f"{'a' * 65}@example.com"
    with pytest.raises(InvalidAddress, match="before the @"):
        normalize_email(long_name)
    with pytest.raises(InvalidAddress, match="before the @"):
        normalize_email(f"{'a' * 32}.{'b' * 32}@example.com")  # 65, dots and all
    assert normalize_email(f"{'a' * 64}@example.com") == f"{'a' * 64}@example.com"
    assert lookup_form(long_name) == long_name  # one stored before the rule is still found
