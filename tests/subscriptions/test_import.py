"""The CSV import's set-based chunks: boundaries, duplicates, known and erased addresses."""

from __future__ import annotations

import io
import uuid
import zlib

import pytest
from flask import Flask
from sqlalchemy import delete, func, select

from newsletter.extensions import db
from newsletter.models import (
    ConsentEvent,
    ConsentKind,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Erasure,
    Status,
    Subscriber,
    new_message_keys,
    new_public_ids,
)
from newsletter.subscriptions import importer
from newsletter.subscriptions.erased import email_hash
from tests.subscriptions.helpers import confirmed, find, set_status


def run_import(app: Flask, body: str, confirmed: bool = False, connections: int = 1) -> dict:
    """Import ``body`` over ``connections``; the report as the API answers it."""
    return import_bytes(app, body.encode(), confirmed, connections).to_dict()


def import_bytes(
    app: Flask, body: bytes, confirmed: bool = False, connections: int = 1
) -> importer.ImportReport:
    """Import the file ``body`` as it is (any encoding); its report."""
    with app.app_context():
        report = importer.import_csv(
            db.session, io.BytesIO(body), confirmed=confirmed, connections=connections
        )
        db.session.remove()
    return report


def history(app: Flask) -> dict[str, list[str]]:
    """Every subscriber's consent event kinds, in the order they were recorded."""
    with app.app_context():
        rows = db.session.execute(
            select(Subscriber.email, ConsentEvent.kind)
            .join(ConsentEvent, ConsentEvent.subscriber_id == Subscriber.id)
            .order_by(ConsentEvent.id)
        )
        kinds: dict[str, list[str]] = {}
        for email, kind in rows:
            kinds.setdefault(email, []).append(kind.value)
        return kinds


def confirmations(app: Flask) -> dict[str, int]:
    """Queued confirmation deliveries per address."""
    with app.app_context():
        rows = db.session.execute(
            select(Subscriber.email, func.count(Delivery.id))
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(
                Delivery.kind == DeliveryKind.CONFIRMATION,
                Delivery.status == DeliveryStatus.QUEUED,
            )
            .group_by(Subscriber.email)
        )
        return dict(rows.all())


@pytest.fixture(params=[1, 2], ids=["one-connection", "two-connections"])
def connections(request: pytest.FixtureRequest) -> int:
    """Over how many connections the import writes (``IMPORT_CONNECTIONS``)."""
    return request.param


@pytest.mark.usefixtures("small_chunks")
def test_every_row_across_chunk_boundaries_gets_its_subscriber_events_and_email(app, connections):
    emails = [f"Reader.{i}@Example.com" for i in range(10)]  # 3 + 3 + 3 + 1 on one connection
    body = "email,name\n" + "".join(f"{e},R{i}\n" for i, e in enumerate(emails))
    report = run_import(app, body, connections=connections)
    assert (report["created"], report["updated"], report["skipped"]) == (10, 0, 0)
    lowered = [e.lower() for e in emails]
    assert history(app) == {e: ["imported", "confirmation_queued"] for e in lowered}
    assert confirmations(app) == dict.fromkeys(lowered, 1)
    with app.app_context():
        ordered = db.session.scalars(select(Subscriber.email).order_by(Subscriber.id)).all()
        keys = db.session.scalars(select(Delivery.message_key)).all()
    # ids follow the file, within each connection's share of it
    for lane in range(connections):
        share = [e for e in lowered if zlib.crc32(e.encode()) % connections == lane]
        assert [e for e in ordered if e in share] == share
    assert sorted(ordered) == sorted(lowered)
    assert all(str(uuid.UUID(key)) == key for key in keys)
    assert find(app, "reader.4@example.com").name == "R4"


@pytest.mark.usefixtures("small_chunks")
def test_a_duplicate_in_a_later_chunk_counts_as_known_not_as_new(app):
    body = "email,name\na@example.com,A\nb@example.com,\nc@example.com,\nA@EXAMPLE.com,Renamed\n"
    report = run_import(app, body)
    # The second "a" is in the next chunk: by then it is a pending subscriber,
    # and its new name is an update (within one chunk it would be skipped).
    assert (report["created"], report["updated"], report["skipped"]) == (3, 1, 0)
    assert find(app, "a@example.com").name == "Renamed"
    assert confirmations(app)["a@example.com"] == 1
    assert history(app)["a@example.com"] == ["imported", "confirmation_queued"]


def test_addresses_already_known_and_new_in_one_chunk(app, client, connections):
    client.post("/subscribe", json={"email": "pending@example.com"})
    body = "email,name\nnew@example.com,N\nPENDING@example.com,P\nother@example.com,\n"
    report = run_import(app, body, confirmed=True, connections=connections)
    assert (report["created"], report["updated"], report["skipped"]) == (2, 1, 0)
    assert find(app, "pending@example.com").status is Status.CONFIRMED
    assert find(app, "pending@example.com").name == "P"
    assert find(app, "new@example.com").status is Status.CONFIRMED
    kinds = history(app)
    assert kinds["new@example.com"] == ["imported"]
    assert kinds["pending@example.com"] == ["signup", "confirmation_queued", "imported"]
    assert "new@example.com" not in confirmations(app)  # confirmed: no email


@pytest.mark.usefixtures("small_chunks")
def test_suppressed_addresses_are_skipped_in_any_chunk(app, connections):
    with app.app_context():
        for email, status in (("gone@example.com", Status.BOUNCED), ("back@x.org", Status.PENDING)):
            db.session.add(Erasure(email_hash=email_hash(email), prior_status=status))
        db.session.commit()
    body = "email\na@example.com\nb@example.com\nc@example.com\nGone@example.com\nback@x.org\n"
    report = run_import(app, body, connections=connections)
    assert (report["created"], report["skipped"]) == (4, 1)
    assert find(app, "gone@example.com") is None
    assert find(app, "back@x.org").status is Status.PENDING  # erased, not suppressed


def test_a_chunk_of_only_suppressed_or_bad_lines_imports_nothing(app, connections):
    with app.app_context():
        gone = Erasure(email_hash=email_hash("gone@example.com"), prior_status=Status.COMPLAINED)
        db.session.add(gone)
        db.session.commit()
    report = run_import(app, "email\ngone@example.com\nnot-an-address\n", connections=connections)
    assert (report["created"], report["skipped"], report["error_count"]) == (0, 1, 1)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_a_second_import_of_the_same_file_creates_nothing(app, connections):
    body = "email,name\n" + "".join(f"r{i}@example.com,R{i}\n" for i in range(7))
    assert run_import(app, body, connections=connections)["created"] == 7
    report = run_import(app, body, connections=connections)
    assert (report["created"], report["updated"], report["skipped"]) == (0, 0, 7)
    assert confirmations(app) == {f"r{i}@example.com": 1 for i in range(7)}
    with app.app_context():
        assert (
            db.session.scalar(select(func.count()).where(ConsentEvent.kind == ConsentKind.IMPORTED))
            == 7
        )


def test_batched_identifiers_have_the_single_ones_form():
    keys = new_message_keys(2000)
    assert len(set(keys)) == 2000
    for key in keys:
        parsed = uuid.UUID(key)
        assert str(parsed) == key and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    ids = new_public_ids(2000)
    assert len(set(ids)) == 2000
    assert all(len(i) == 16 and i.replace("-", "").replace("_", "").isalnum() for i in ids)
    assert new_message_keys(0) == [] and new_public_ids(0) == []


def test_a_line_that_is_not_utf8_fails_alone_wherever_it_falls(app):
    # Strict decoding lost the whole block of text around a bad byte: past the first
    # 8 KB, about 300 good lines went missing, and no error named them.
    lines = [f"user{n}@example.com,User {n}".encode() for n in range(2000)]
    lines[1000] = "user1000@example.com,Jos\u00e9".encode("latin-1")  # é as one Latin-1 byte
    report = import_bytes(app, b"email,name\n" + b"\n".join(lines) + b"\n", confirmed=True)
    assert report.created == 1999
    assert report.errors == [
        {"line": 1002, "message": "this line is not UTF-8 (save the file as 'CSV UTF-8')"}
    ]
    assert find(app, "user999@example.com") and find(app, "user1001@example.com")
    assert find(app, "user1000@example.com") is None


def test_a_header_that_is_not_utf8_refuses_the_file(app):
    with app.app_context(), pytest.raises(importer.ImportFormatError, match="not UTF-8"):
        importer.import_csv(db.session, io.BytesIO(b"email,n\xe9m\nann@example.com,x\n"), False)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be"])
def test_excels_unicode_text_imports_its_names_whole(app, client, admin_headers, encoding):
    # Excel's "Unicode Text" (*.txt): UTF-16 with a byte order mark, tab-separated.
    text = "E-mail Address\tFirst Name\r\nzoe@example.com\tZoë\r\nli@example.com\t李\r\n"
    bom = "\ufeff" if encoding == "utf-16-be" else ""  # Python's utf-16 writes its own
    response = client.post(
        "/admin/subscribers/import?confirmed=true",
        data=(bom + text).encode(encoding),
        headers={**admin_headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["created"] == 2 and response.get_json()["errors"] == []
    assert find(app, "zoe@example.com").name == "Zoë"
    assert find(app, "li@example.com").name == "李"


def test_a_utf16_line_holding_a_broken_character_fails_alone(app):
    body = "email,name\nann@example.com,Ann\n".encode("utf-16")
    body += "bad@example.com,B".encode("utf-16-le") + b"\x00\xd8"  # a lone high surrogate
    body += "\nbob@example.com,Bob\n".encode("utf-16-le")
    report = import_bytes(app, body, confirmed=True)
    assert report.created == 2
    assert report.errors == [
        {"line": 3, "message": "this line is not UTF-16 (save the file as 'CSV UTF-8')"}
    ]
    assert find(app, "bad@example.com") is None


def test_the_import_leaves_its_callers_stream_open(app):
    stream = io.BytesIO(b"email\nann@example.com\n")
    with app.app_context():
        importer.import_csv(db.session, stream, confirmed=True, connections=1)
        db.session.remove()
    assert not stream.closed and stream.read() == b""


@pytest.mark.usefixtures("small_chunks")
def test_a_quote_left_open_fails_its_own_line_only(app):
    # The CSV reader took the rest of the file into that one field until it passed the
    # field limit: thousands of good lines lost, one error naming the wrong line.
    lines = ["email,name", 'first@example.com,"Unclosed']
    lines += [f"bulk{n}@example.com,B" for n in range(5000)]
    lines += ['tall@example.com,Bob 5" tall', 'quoted@example.com,"Lee, Ann"']
    # Two quotes, and still one left open: the first is a plain character of its field.
    lines += ['two@example.com,5" tall,"x', "after@example.com,A", 'end@example.com,"x']
    report = run_import(app, "\r\n".join(lines) + "\r\n", confirmed=True)
    assert report["created"] == 5003
    assert report["errors"] == [
        {"line": 2, "message": "a quoted field is not closed on this line"},
        {"line": 5005, "message": "a quoted field is not closed on this line"},
        {"line": 5007, "message": "a quoted field is not closed on this line"},
    ]
    assert find(app, "after@example.com") and find(app, "two@example.com") is None
    assert find(app, "first@example.com") is None and find(app, "end@example.com") is None
    assert find(app, "bulk0@example.com") and find(app, "bulk4999@example.com")
    assert find(app, "tall@example.com").name == 'Bob 5" tall'
    assert find(app, "quoted@example.com").name == "Lee, Ann"


@pytest.mark.parametrize(
    "header", [b'"email,name', b'email,"name', b'email;"name', b'email\t"name']
)
def test_a_header_with_a_quote_left_open_refuses_the_file(app, header):
    body = header + b"\nann@example.com,x\n"
    with app.app_context(), pytest.raises(importer.ImportFormatError, match="not closed"):
        importer.import_csv(db.session, io.BytesIO(body), False)


def test_a_name_over_200_characters_fails_its_line_not_cut_unseen(app):
    """Signup refuses such a name (422); the import used to store its first 200 characters."""
    long_name = "N" * 201
    report = run_import(app, f"email,name\nlong@example.com,{long_name}\nok@example.com,Ok\n")
    assert report["created"] == 1
    assert report["errors"] == [{"line": 2, "message": "the name is longer than 200 characters"}]
    assert find(app, "long@example.com") is None
    assert find(app, "ok@example.com").name == "Ok"


@pytest.mark.parametrize(
    "body",
    [
        # Mailchimp's export: its own titles, the name in two columns.
        '"Email Address","First Name","Last Name","Phone Number"\n'
        'ann@example.com,Ann,Lee,555\n"bob@example.com","Bob","",\n',
        # Excel in much of Europe: semicolons, and a title spelled its way.
        "Name;E-Mail\nAnn Lee;ann@example.com\nBob;bob@example.com\n",
        "email\tname\nann@example.com\tAnn Lee\nbob@example.com\tBob\n",  # tab-separated
        # German, French, Spanish exports: the names were dropped, or the file refused.
        "E-Mail;Vorname;Nachname\nann@example.com;Ann;Lee\nbob@example.com;Bob;\n",
        "E-Mail-Adresse;Name\nann@example.com;Ann Lee\nbob@example.com;Bob\n",
        "Adresse e-mail;Prénom;Nom\nann@example.com;Ann;Lee\nbob@example.com;Bob;\n",
        "Correo electrónico;Nombre;Apellidos\nann@example.com;Ann;Lee\nbob@example.com;Bob;\n",
        # Excel's separator line before the header: the whole file was refused.
        "sep=;\r\nE-Mail;Name\r\nann@example.com;Ann Lee\r\nbob@example.com;Bob\r\n",
    ],
)
def test_lists_from_other_tools_import_as_they_come(app, body):
    report = run_import(app, body, confirmed=True)
    assert (report["created"], report["errors"]) == (2, [])
    assert find(app, "ann@example.com").name == "Ann Lee"
    assert find(app, "bob@example.com").name == "Bob"


def test_lines_are_counted_from_the_separator_line(app):
    report = run_import(app, "sep=,\nemail\nann@example.com\nnot-an-address\n", confirmed=True)
    assert report["created"] == 1 and [e["line"] for e in report["errors"]] == [4]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"email,E-mail\nann@example.com,bob@example.com\n", "more than one email column"),
        (b"PK\x03\x04\x14\x00\x06\x00rest of a zip", "spreadsheet workbook"),
        (b"Name,Phone\nAnn,555\n", "its first line reads 'Name,Phone'"),
        (b"", "its first line is empty"),
    ],
)
def test_a_file_we_cannot_read_says_what_it_found(app, body, message):
    with app.app_context(), pytest.raises(importer.ImportFormatError, match=message):
        importer.import_csv(db.session, io.BytesIO(body), False)
    assert find(app, "ann@example.com") is None


def test_the_import_command_exits_1_when_a_line_failed_and_keeps_the_rest(app, tmp_path):
    good, mixed = tmp_path / "good.csv", tmp_path / "mixed.csv"
    good.write_text("email\nann@example.com\n")
    mixed.write_text("email\nbob@example.com\nnot-an-address\n")
    runner = app.test_cli_runner()
    clean = runner.invoke(args=["subscribers", "import", str(good)])
    assert clean.exit_code == 0 and "created 1, updated 0, skipped 0, errors 0" in clean.output
    partial = runner.invoke(args=["subscribers", "import", str(mixed)])
    assert partial.exit_code == 1
    assert "created 1, updated 0, skipped 0, errors 1" in partial.stdout
    assert partial.stderr.startswith("line 3: ")
    assert find(app, "bob@example.com").status is Status.PENDING


def test_a_name_broken_by_a_unicode_line_separator_fails_its_line(app):
    report = run_import(app, "email,name\nann@example.com,Ann\u2028Lee\nbob@example.com,Bob\n")
    assert report["created"] == 1
    assert report["errors"] == [{"line": 2, "message": "the name must be a single line of text"}]


def test_an_imported_name_is_kept_composed(app):
    report = run_import(app, "email,name\nann@example.com,Zoe\u0308\n", confirmed=True)
    assert report["created"] == 1
    assert find(app, "ann@example.com").name == "Zo\u00eb"


def test_our_own_export_imported_elsewhere_brings_back_nobody_who_left(
    app, client, admin_headers, outbox
):
    # Imported with ?confirmed=true, an export made everyone in it confirmed: readers who
    # had unsubscribed, bounced or complained would have had the next digest.
    confirmed(client, outbox, "stays@example.com")
    for email, status in [
        ("left@example.com", Status.UNSUBSCRIBED),
        ("bounced@example.com", Status.BOUNCED),
        ("complained@example.com", Status.COMPLAINED),
    ]:
        confirmed(client, outbox, email)
        set_status(app, email, status)
    client.post("/subscribe", data={"email": "pending@example.com"})
    export = client.get("/admin/subscribers/export.csv", headers=admin_headers).get_data()
    start_afresh(app)  # another instance, the export in hand

    report = run_import(app, export.decode(), confirmed=True)
    assert (report["created"], report["skipped"]) == (1, 3)
    assert [error["line"] for error in report["errors"]] == [line_of(export, "pending@example.com")]
    assert "never confirmed" in report["errors"][0]["message"]
    assert find(app, "stays@example.com").status is Status.CONFIRMED
    again = run_import(app, export.decode())  # asked to confirm, as any new address is
    assert (again["created"], again["skipped"]) == (1, 4)  # the three, and stays@ known
    assert find(app, "pending@example.com").status is Status.PENDING
    assert all(find(app, f"{who}@example.com") is None for who in ("left", "bounced", "complained"))


def start_afresh(app: Flask) -> None:
    with app.app_context():
        for model in (ConsentEvent, Delivery, Subscriber):
            db.session.execute(delete(model))
        db.session.commit()


def line_of(csv_bytes: bytes, email: str) -> int:
    return next(n for n, line in enumerate(csv_bytes.decode().splitlines(), 1) if email in line)


@pytest.mark.parametrize("cell", ["unsubscribed", "Cleaned", " bounced "])
def test_a_status_column_from_another_tool_keeps_its_leavers_out(app, cell):
    report = run_import(app, f"Email Address,Status\nann@example.com,{cell}\n", confirmed=True)
    assert (report["created"], report["skipped"]) == (0, 1)
    assert find(app, "ann@example.com") is None


def test_an_address_erased_after_it_unsubscribed_is_not_imported_again(
    app, client, admin_headers, outbox
):
    confirmed(client, outbox, "gone@example.com")
    set_status(app, "gone@example.com", Status.UNSUBSCRIBED)
    erased = client.delete("/admin/subscribers/gone@example.com", headers=admin_headers)
    assert erased.status_code == 204
    report = run_import(app, "email\ngone@example.com\n", confirmed=True)
    assert (report["created"], report["skipped"]) == (0, 1)
    assert find(app, "gone@example.com") is None
    # Their own signup, by double opt-in, is still theirs to make.
    client.post("/subscribe", data={"email": "gone@example.com"})
    assert find(app, "gone@example.com").status is Status.PENDING


@pytest.mark.parametrize(
    ("cell", "outcome"),
    [
        ("Subscribed", "created"),
        ("active", "created"),
        ("", "created"),
        ("unconfirmed", "error"),  # under ?confirmed=true, as pending
        ("Marked as spam", "skipped"),
        ("archived", "skipped"),
        ("VIP", "error"),  # a status this import does not know: never taken for "in"
        ("Unsubscribed, 2024-01-01", "error"),
    ],
)
def test_a_status_this_import_does_not_know_fails_its_line(app, cell, outcome):
    report = run_import(app, f'email,status\nann@example.com,"{cell}"\n', confirmed=True)
    counts = {
        "created": report["created"],
        "skipped": report["skipped"],
        "error": report["error_count"],
    }
    assert counts == {key: int(key == outcome) for key in counts}, report
    if outcome == "error" and cell == "VIP":
        assert "'VIP' is not one this import knows" in report["errors"][0]["message"]


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-32"])
def test_wide_text_without_a_usable_mark_is_named_as_such(app, encoding):
    body = "email\nann@example.com\n".encode(encoding)
    with app.app_context(), pytest.raises(importer.ImportFormatError, match="UTF-16 or UTF-32"):
        importer.import_csv(db.session, io.BytesIO(body), False)


def test_every_status_our_export_writes_has_a_meaning_on_import():
    from newsletter.subscriptions.csv_layout import LEFT, NEVER_CONFIRMED, SUBSCRIBED

    for status in Status:
        assert sum(status.value in words for words in (SUBSCRIBED, NEVER_CONFIRMED, LEFT)) == 1
