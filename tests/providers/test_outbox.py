"""The outbox provider's files, and an erasure that finds them by name."""

from __future__ import annotations

from newsletter.providers.outbox import OutboxProvider, recipient_tag

from .messages import digest


def test_an_erasure_finds_its_files_by_name_and_old_files_by_their_headers(tmp_path):
    outbox = OutboxProvider(tmp_path)
    outbox.send_batch([digest(1, to="Ann@Example.com"), digest(2, to="bob@example.com")])
    ann, bob = recipient_tag("ann@example.com"), recipient_tag("bob@example.com")
    assert {p.name for p in tmp_path.glob("*.eml")} == {
        f"{digest(1).key}.{ann}.eml",  # one case: the tag of the address, however written
        f"{digest(2).key}.{bob}.eml",
    }
    # Written before names carried a tag: found by reading its To.
    (tmp_path / "old-key.eml").write_bytes(b"To: ann@example.com\r\nSubject: old\r\n\r\nbody\r\n")
    # A name is trusted, not its headers: the tag says whose file it is.
    (tmp_path / f"other.{bob}.eml").write_bytes(b"To: ann@example.com\r\n\r\nbody\r\n")
    (tmp_path / "older-key.eml").write_bytes(b"To: bob@example.com\r\n\r\nbody\r\n")

    assert outbox.forget("ann@example.com") == 2

    assert {p.name for p in tmp_path.glob("*.eml")} == {
        f"{digest(2).key}.{bob}.eml",
        f"other.{bob}.eml",
        f"older-key.{bob}.eml",  # read once, and named so no erasure reads it again
    }


def test_a_unicode_domain_has_the_tag_of_its_ascii_form():
    assert recipient_tag("ann@bücher.example") == recipient_tag("ann@xn--bcher-kva.example")
