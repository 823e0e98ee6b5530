"""Correcting a post before it goes out: by the admin API, or by the blog's feed."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from newsletter.extensions import db
from newsletter.models import Post
from tests.conftest import is_postgresql, libpq_url
from tests.digests.helpers import add_confirmed, add_post
from tests.digests.servers import serve_folder


def _feed(*items: tuple[str, str, str]) -> str:
    """An RSS feed of (guid, title, link) items."""
    entries = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>"
        "<pubDate>Thu, 08 Oct 2020 09:00:00 +0000</pubDate></item>"
        for guid, title, link in items
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel>'
        "<title>Clinic Blog</title><link>https://clinic.example.org/</link>"
        f"<description>News</description>{entries}</channel></rss>"
    )


def _import_twice(client, headers, folder, first: tuple, second: tuple) -> dict:
    """Import a feed of the ``first`` items, then of the ``second``; the second report."""
    feed = folder / "rss.xml"
    feed.write_text(_feed(*first))
    with serve_folder(folder) as base:
        source = {"url": f"{base}/rss.xml"}
        client.post("/admin/posts/import-feed", json=source, headers=headers)
        feed.write_text(_feed(*second))
        return client.post("/admin/posts/import-feed", json=source, headers=headers).get_json()


def _titles(client, headers) -> dict[int, str]:
    items = client.get("/admin/posts", headers=headers).get_json()["items"]
    return {post["id"]: post["title"] for post in items}


def test_a_waiting_post_is_corrected_and_the_digest_carries_the_correction(
    app, client, admin_headers
):
    add_confirmed(app, 1)
    post = add_post(client, admin_headers, 1, title="Hip extnesion", categories=["Running"])
    fixed = client.patch(
        f"/admin/posts/{post['id']}",
        json={"title": "Hip extension", "summary": None},
        headers=admin_headers,
    )
    assert fixed.status_code == 200, fixed.get_json()
    body = fixed.get_json()
    assert body["title"] == "Hip extension"
    assert body["summary"] is None  # null clears an optional field
    assert body["categories"] == ["Running"] and body["url"] == post["url"]  # not given: kept
    assert body["edited_at"] > post["edited_at"]  # the admin's own post: set from the start
    preview = client.get("/admin/digests/preview", headers=admin_headers).get_data(as_text=True)
    assert "Hip extension" in preview and "extnesion" not in preview
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    assert [p["title"] for p in digest["posts"]] == ["Hip extension"]
    one = client.get(f"/admin/posts/{post['id']}", headers=admin_headers)
    assert one.status_code == 200 and one.get_json()["title"] == "Hip extension"
    assert one.get_json()["digest_id"] == digest["id"]


def test_a_link_another_post_has_names_that_post(client, admin_headers):
    first = add_post(client, admin_headers, 1)
    second = add_post(client, admin_headers, 2)
    clash = client.patch(
        f"/admin/posts/{second['id']}", json={"url": first["url"]}, headers=admin_headers
    )
    assert clash.status_code == 409
    assert clash.get_json()["error"]["message"] == f"Post {first['id']} has that url."


def test_a_post_a_digest_took_is_neither_changed_nor_deleted(app, client, admin_headers):
    add_confirmed(app, 1)
    post = add_post(client, admin_headers, 1)
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    changed = client.patch(
        f"/admin/posts/{post['id']}", json={"title": "Rewritten"}, headers=admin_headers
    )
    assert changed.status_code == 409
    error = changed.get_json()["error"]
    assert error["code"] == "post_sent" and f"Digest {digest['id']}" in error["message"]
    deleted = client.delete(f"/admin/posts/{post['id']}", headers=admin_headers)
    assert deleted.status_code == 409 and deleted.get_json()["error"]["code"] == "post_sent"
    marked = client.post(f"/admin/posts/{post['id']}/mark-sent", headers=admin_headers)
    assert marked.status_code == 409 and marked.get_json()["error"]["code"] == "post_sent"
    assert _titles(client, admin_headers) == {post["id"]: "Post 1"}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"titel": "Typo"}, 422, "unknown_field", "titel"),
        ({}, 422, "nothing_to_change", "body"),
        ({"title": ""}, 422, "missing_title", "title"),
        ({"title": None}, 422, "missing_title", "title"),
        ({"url": "javascript:alert(1)"}, 422, "invalid_url", "url"),
        ({"published_at": "yesterday"}, 422, "invalid_published_at", "published_at"),
        ({"categories": "Running"}, 422, "invalid_categories", "categories"),
        ({"url": "https://blog.example.org/post-2"}, 409, "duplicate_url", "url"),
    ],
)
def test_a_bad_correction_is_refused_with_its_field_and_changes_nothing(
    client, admin_headers, body, status, code, field
):
    post = add_post(client, admin_headers, 1)
    add_post(client, admin_headers, 2)
    refused = client.patch(f"/admin/posts/{post['id']}", json=body, headers=admin_headers)
    assert refused.status_code == status
    error = refused.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    stored = client.get("/admin/posts", headers=admin_headers).get_json()["items"]
    kept = {p["url"]: (p["title"], p["edited_at"]) for p in stored}[post["url"]]
    assert kept == ("Post 1", post["edited_at"])


def test_a_post_that_is_not_there_is_a_404_and_the_api_wants_json_and_the_token(
    client, admin_headers
):
    assert (
        client.patch("/admin/posts/99", json={"title": "x"}, headers=admin_headers).status_code
        == 404
    )
    assert client.delete("/admin/posts/99", headers=admin_headers).status_code == 404
    assert client.post("/admin/posts/99/mark-sent", headers=admin_headers).status_code == 404
    post = add_post(client, admin_headers, 1)
    as_form = client.patch(f"/admin/posts/{post['id']}", data={"title": "x"}, headers=admin_headers)
    assert as_form.status_code == 415
    assert client.patch(f"/admin/posts/{post['id']}", json={"title": "x"}).status_code == 401
    assert client.delete(f"/admin/posts/{post['id']}").status_code == 401


def test_a_deleted_post_is_gone_and_one_marked_sent_stays_out_of_digests(
    app, client, admin_headers, tmp_path
):
    add_confirmed(app, 1)
    link = "https://clinic.example.org/old/"
    (tmp_path / "rss.xml").write_text(_feed(("old", "Old post", link)))
    with serve_folder(tmp_path) as base:
        feed = {"url": f"{base}/rss.xml"}
        (imported,) = client.post(
            "/admin/posts/import-feed", json=feed, headers=admin_headers
        ).get_json()["posts"]
        assert (
            client.delete(f"/admin/posts/{imported['id']}", headers=admin_headers).status_code
            == 204
        )
        assert _titles(client, admin_headers) == {}
        # Deleted, it comes back with the next import of a feed that still lists it ...
        again = client.post("/admin/posts/import-feed", json=feed, headers=admin_headers)
        assert again.get_json()["created"] == 1
        (back,) = again.get_json()["posts"]
        # ... marked as sent, it stays out of every digest, imported again or not.
        marked = client.post(f"/admin/posts/{back['id']}/mark-sent", headers=admin_headers)
        assert marked.status_code == 200 and marked.get_json()["marked_sent_at"] is not None
        third = client.post("/admin/posts/import-feed", json=feed, headers=admin_headers)
        assert third.get_json()["created"] == 0
    refused = client.post("/admin/digests", json={}, headers=admin_headers)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "no_new_posts"


def test_a_feed_import_brings_waiting_posts_up_to_date_but_not_an_admins_correction(
    app, client, admin_headers, tmp_path
):
    add_confirmed(app, 1)
    links = [f"https://clinic.example.org/{n}/" for n in range(3)]
    feed = tmp_path / "rss.xml"
    feed.write_text(_feed(*((f"g{n}", f"Titel {n}", links[n]) for n in range(3))))
    with serve_folder(tmp_path) as base:
        source = {"url": f"{base}/rss.xml"}
        posts = client.post("/admin/posts/import-feed", json=source, headers=admin_headers)
        ids = {p["url"]: p["id"] for p in posts.get_json()["posts"]}
        # Post 0 goes out as it is; the admin corrects post 1 by hand.
        client.post(f"/admin/posts/{ids[links[1]]}/mark-sent", headers=admin_headers)
        client.post(f"/admin/posts/{ids[links[2]]}/mark-sent", headers=admin_headers)
        assert client.post("/admin/digests", json={}, headers=admin_headers).status_code == 202
        client.post(f"/admin/posts/{ids[links[1]]}/unmark-sent", headers=admin_headers)
        client.patch(
            f"/admin/posts/{ids[links[1]]}", json={"title": "By hand 1"}, headers=admin_headers
        )
        # The blog fixes every title, and moves post 2 to a new link (its guid kept).
        feed.write_text(
            _feed(
                ("g0", "Title 0", links[0]),
                ("g1", "Title 1", links[1]),
                ("g2", "Title 2", "https://clinic.example.org/2-moved/"),
            )
        )
        report = client.post("/admin/posts/import-feed", json=source, headers=admin_headers)
    assert report.get_json() | {"posts": []} == {
        "created": 0,
        "duplicates": 3,
        "updated": 1,
        "invalid": 0,
        "posts": [],
    }
    titles = _titles(client, admin_headers)
    assert titles[ids[links[0]]] == "Titel 0"  # a digest took it: as its readers have it
    assert titles[ids[links[1]]] == "By hand 1"  # the admin's correction stays
    assert titles[ids[links[2]]] == "Title 2"  # waiting (marked): the feed's fix taken
    stored = client.get("/admin/posts", headers=admin_headers).get_json()["items"]
    # Its new link too: the digest linked to the old one, a dead page (a tester's find).
    assert {p["id"]: p["url"] for p in stored}[
        ids[links[2]]
    ] == "https://clinic.example.org/2-moved/"


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        ("patch", "/admin/posts/2147483648", "No post has that id."),
        ("delete", "/admin/posts/2147483648", "No post has that id."),
        ("post", "/admin/posts/99999999999999999999/mark-sent", "No post has that id."),
        ("patch", f"/admin/posts/{'9' * 40}", "No post has that id."),
        ("get", "/admin/posts/2147483648", "No post has that id."),
        ("delete", "/admin/posts/-1", "No post has that id."),
        ("delete", "/admin/posts/%D9%A1", None),  # U+0661: not post 1, and no route
        ("post", "/admin/posts/2147483648/unmark-sent", "No post has that id."),
        ("get", "/admin/digests/2147483648", "No digest has that id."),
        ("post", "/admin/digests/0/test", "No digest has that id."),
    ],
)
def test_an_id_past_the_columns_range_is_the_endpoints_own_404(
    client, admin_headers, method, path, message
):
    # int(max=...) in the route answered Flask's own 404, or a 405 from another rule.
    add_post(client, admin_headers, 1)  # post 1, which U+0661 deleted
    answer = getattr(client, method)(path, json={"title": "x"}, headers=admin_headers)
    assert answer.status_code == 404
    error = answer.get_json()["error"]
    assert error["code"] == "not_found" and (message is None or error["message"] == message)
    assert len(client.get("/admin/posts", headers=admin_headers).get_json()["items"]) == 1


def test_another_entry_with_the_same_link_does_not_rewrite_the_post(
    client, admin_headers, tmp_path
):
    news = "https://clinic.example.org/news/"
    report = _import_twice(
        client,
        admin_headers,
        tmp_path,
        (("n1", "Opening hours", news),),
        (("n2", "Holiday closure", news), ("n1", "Opening hours", news)),
    )
    assert (report["duplicates"], report["updated"]) == (2, 0)
    assert list(_titles(client, admin_headers).values()) == ["Opening hours"]


def test_a_feed_refresh_and_a_digest_trigger_never_deadlock(
    app, client, admin_headers, tmp_path, database_uri
):
    """The refresh held every changed post of a chunk until its end; a trigger locks them all.

    Each waiting on a post the other held, PostgreSQL ended one of them with a
    deadlock: a 503 to the trigger or the import.
    """
    if not is_postgresql(database_uri):
        pytest.skip("PostgreSQL's row locks: SQLite lets one writer in at a time")
    feed = tmp_path / "rss.xml"
    links = ["https://clinic.example.org/a/", "https://clinic.example.org/b/"]
    feed.write_text(_feed(("a", "Title a", links[0]), ("b", "Title b", links[1])))
    conninfo = libpq_url(database_uri)
    with serve_folder(tmp_path) as base:
        source = {"url": f"{base}/rss.xml"}
        client.post("/admin/posts/import-feed", json=source, headers=admin_headers)
        feed.write_text(_feed(("a", "Fixed a", links[0]), ("b", "Fixed b", links[1])))
        answers: list = []
        with psycopg.connect(conninfo) as trigger:
            # A trigger's UPDATE of every waiting post has locked b, and goes on to a.
            trigger.execute("UPDATE posts SET summary = summary WHERE url = %s", (links[1],))
            importer = threading.Thread(
                target=lambda: answers.append(
                    app.test_client().post(
                        "/admin/posts/import-feed", json=source, headers=admin_headers
                    )
                )
            )
            importer.start()
            time.sleep(0.5)  # the import has written a, and waits for b
            trigger.execute("UPDATE posts SET summary = summary WHERE url = %s", (links[0],))
            trigger.commit()
            importer.join(30)
    (answer,) = answers
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["updated"] == 2
    assert sorted(_titles(client, admin_headers).values()) == ["Fixed a", "Fixed b"]


def test_the_admins_own_post_and_a_link_corrected_here_survive_a_guidless_feed(
    client, admin_headers, tmp_path
):
    """Two testers' finds, with a feed whose entries carry no guid.

    The feed rewrote the admin's own post at the same link (title, summary,
    categories gone); and a feed post whose link the admin corrected came
    back, at its old link, as a second post in the next digest.
    """
    own = add_post(client, admin_headers, 1, url="https://clinic.example.org/saturdays/")
    feed = tmp_path / "rss.xml"
    item = "<item><title>{}</title><link>{}</link></item>"
    feed.write_text(
        _feed().replace(
            "</channel>",
            item.format("saturday-hours", own["url"])
            + item.format("No guid", "https://clinic.example.org/noguid/")
            + "</channel>",
        )
    )
    with serve_folder(tmp_path) as base:
        source = {"url": f"{base}/rss.xml"}
        first = client.post("/admin/posts/import-feed", json=source, headers=admin_headers)
        (imported,) = first.get_json()["posts"]
        assert imported["guid"] == "link:https://clinic.example.org/noguid/"  # its first link
        fixed = client.patch(
            f"/admin/posts/{imported['id']}",
            json={"url": "https://clinic.example.org/noguid-fixed/"},
            headers=admin_headers,
        )
        assert fixed.status_code == 200
        again = client.post("/admin/posts/import-feed", json=source, headers=admin_headers)
    assert (again.get_json()["created"], again.get_json()["updated"]) == (0, 0)
    titles = _titles(client, admin_headers)
    assert titles == {own["id"]: "Post 1", imported["id"]: "No guid"}


def test_a_post_stored_without_a_guid_is_never_rewritten_by_a_feed(
    app, client, admin_headers, tmp_path
):
    """A post from before guid-less entries kept their link (or the admin's, before edited_at).

    A feed listing its link, with a guid or without, leaves its text alone: it
    may be the admin's (a reviewer's find: a feed with guids rewrote it).
    """
    with app.app_context():
        db.session.add(
            Post(title="Admin title", url="https://clinic.example.org/sat/", summary="Mine")
        )
        db.session.commit()
        db.session.remove()
    feed = tmp_path / "rss.xml"
    feed.write_text(
        _feed(
            ("https://clinic.example.org/?p=7", "saturday-hours", "https://clinic.example.org/sat/")
        )
    )
    with serve_folder(tmp_path) as base:
        report = client.post(
            "/admin/posts/import-feed", json={"url": f"{base}/rss.xml"}, headers=admin_headers
        )
    assert (report.get_json()["duplicates"], report.get_json()["updated"]) == (1, 0)
    (post,) = client.get("/admin/posts", headers=admin_headers).get_json()["items"]
    assert (post["title"], post["summary"]) == ("Admin title", "Mine")


def test_a_moved_link_never_takes_one_a_new_entry_or_another_post_has(
    client, admin_headers, tmp_path
):
    one, two = "https://clinic.example.org/one/", "https://clinic.example.org/two/"
    # g1 "moves" to the link of a new entry of the same import: the new entry keeps it.
    report = _import_twice(
        client,
        admin_headers,
        tmp_path,
        (("g1", "One", one),),
        (("g1", "One", two), ("g2", "New two", two)),
    )
    assert report["created"] == 1
    stored = {
        p["title"]: p["url"]
        for p in client.get("/admin/posts", headers=admin_headers).get_json()["items"]
    }
    assert stored == {"One": one, "New two": two}
