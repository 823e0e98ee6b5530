"""A blog's archive marked as gone out: the first digest carries only what comes next."""

from __future__ import annotations

from tests.digests.helpers import add_confirmed, add_post
from tests.digests.servers import serve_folder

ARCHIVE = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Clinic Blog</title><link>https://clinic.example.org/</link>
<description>News</description>
<item><title>Old post one</title><link>https://clinic.example.org/old-1/</link>
  <pubDate>Thu, 08 Oct 2020 09:00:00 +0000</pubDate></item>
<item><title>Old post two</title><link>https://clinic.example.org/old-2/</link>
  <pubDate>Tue, 08 Sep 2020 09:00:00 +0000</pubDate></item>
<item><title>Scheduled post</title><link>https://clinic.example.org/later/</link>
  <pubDate>Fri, 08 Sep 2090 09:00:00 +0000</pubDate></item>
</channel></rss>
"""


def _posts(client, headers) -> dict[str, dict]:
    items = client.get("/admin/posts", headers=headers).get_json()["items"]
    return {post["title"]: post for post in items}


def test_an_archive_imported_as_sent_is_never_mailed(app, client, admin_headers, tmp_path):
    (tmp_path / "rss.xml").write_text(ARCHIVE)
    add_confirmed(app, 2)
    with serve_folder(tmp_path) as base:
        imported = client.post(
            "/admin/posts/import-feed",
            json={"url": f"{base}/rss.xml", "mark_sent": True},
            headers=admin_headers,
        )
    assert imported.status_code == 200 and imported.get_json()["created"] == 3
    marked = {
        title: post["marked_sent_at"] for title, post in _posts(client, admin_headers).items()
    }
    assert marked["Old post one"] and marked["Old post two"]
    assert marked["Scheduled post"] is None  # not out anywhere yet: it waits for its date

    nothing = client.post("/admin/digests", json={}, headers=admin_headers)
    assert nothing.status_code == 409
    assert nothing.get_json()["error"]["code"] == "no_new_posts"
    assert client.get("/admin/digests/preview", headers=admin_headers).status_code == 409

    add_post(client, admin_headers, 1, title="The first new post")
    digest = client.post("/admin/digests", json={}, headers=admin_headers)
    assert digest.status_code == 202
    assert [post["title"] for post in digest.get_json()["posts"]] == ["The first new post"]


def test_waiting_posts_up_to_a_time_are_marked_and_later_ones_still_go(client, admin_headers, app):
    add_confirmed(app, 1)
    add_post(client, admin_headers, 1, published_at="2026-10-01T09:00:00Z")
    add_post(client, admin_headers, 2, published_at="2026-10-03T09:00:00Z")

    marked = client.post(
        "/admin/posts/mark-sent", json={"before": "2026-10-02T00:00:00Z"}, headers=admin_headers
    )
    assert marked.status_code == 200
    assert marked.get_json() == {"marked": 1, "before": "2026-10-02T00:00:00Z"}
    posts = _posts(client, admin_headers)
    assert posts["Post 1"]["marked_sent_at"] and posts["Post 1"]["sent"] is False
    assert posts["Post 2"]["marked_sent_at"] is None

    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    assert [post["title"] for post in digest["posts"]] == ["Post 2"]
    # A post a digest took stays as it went: marking again touches nothing.
    again = client.post("/admin/posts/mark-sent", headers=admin_headers).get_json()
    assert again["marked"] == 0
    assert _posts(client, admin_headers)["Post 2"]["marked_sent_at"] is None


def test_a_dry_run_counts_and_marks_nothing(app, client, admin_headers):
    add_post(client, admin_headers, 1, published_at="2026-10-01T09:00:00Z")
    add_post(client, admin_headers, 2, published_at="2026-10-03T09:00:00Z")
    dry = client.post("/admin/posts/mark-sent", json={"dry_run": True}, headers=admin_headers)
    assert dry.get_json() == {"marked": 2, "before": dry.get_json()["before"], "dry_run": True}
    result = app.test_cli_runner().invoke(
        args=["posts", "mark-sent", "--before", "2026-10-02", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "1 posts would be marked as sent (dated up to 2026-10-02 00:00 UTC); none was" in (
        result.output
    )
    assert [post["marked_sent_at"] for post in _posts(client, admin_headers).values()] == [
        None,
        None,
    ]


def test_bad_mark_sent_input_is_a_clear_422_and_marks_nothing(client, admin_headers):
    add_post(client, admin_headers, 1)
    for body, code, field in (
        ({"before": "yesterday"}, "invalid_before", "before"),
        ({"before": 5}, "invalid_before", "before"),
        ({"before": ""}, "invalid_before", "before"),
        ({"dry_run": "yes"}, "invalid_dry_run", "dry_run"),
    ):
        answer = client.post("/admin/posts/mark-sent", json=body, headers=admin_headers)
        assert answer.status_code == 422
        assert answer.get_json()["error"]["code"] == code
        assert answer.get_json()["error"]["field"] == field
    flag = client.post(
        "/admin/posts/import-feed",
        json={"url": "http://127.0.0.1:9/rss.xml", "mark_sent": "yes"},
        headers=admin_headers,
    )
    assert flag.status_code == 422 and flag.get_json()["error"]["field"] == "mark_sent"
    assert _posts(client, admin_headers)["Post 1"]["marked_sent_at"] is None
    assert client.post("/admin/posts/mark-sent").status_code == 401


def test_the_cli_marks_an_archive_and_imports_one_as_sent(app, client, admin_headers, tmp_path):
    add_post(client, admin_headers, 1)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["posts", "mark-sent", "--before", "2026-12-01"])
    assert result.exit_code == 0, result.output
    assert "1 posts marked as sent (dated up to 2026-12-01 00:00 UTC)" in result.output
    bad = runner.invoke(args=["posts", "mark-sent", "--before", "soon"])
    assert bad.exit_code == 2 and "before must be ISO 8601" in bad.output

    (tmp_path / "rss.xml").write_text(ARCHIVE)
    with serve_folder(tmp_path) as base:
        result = runner.invoke(args=["posts", "import-feed", f"{base}/rss.xml", "--mark-sent"])
    assert result.exit_code == 0, result.output
    assert "3 new (marked as sent)" in result.output
    assert _posts(client, admin_headers)["Old post two"]["marked_sent_at"]
    empty = runner.invoke(args=["posts", "mark-sent", "--before", " "])
    assert empty.exit_code == 2 and "before must be ISO 8601" in empty.output


def test_a_post_marked_by_mistake_is_unmarked_and_goes_out(app, client, admin_headers):
    add_confirmed(app, 1)
    post = add_post(client, admin_headers, 1)
    client.post("/admin/posts/mark-sent", headers=admin_headers)

    unmarked = client.post(f"/admin/posts/{post['id']}/unmark-sent", headers=admin_headers)
    assert unmarked.status_code == 200 and unmarked.get_json()["marked_sent_at"] is None
    digest = client.post("/admin/digests", json={}, headers=admin_headers).get_json()
    assert [p["title"] for p in digest["posts"]] == ["Post 1"]

    missing = client.post("/admin/posts/99999/unmark-sent", headers=admin_headers)
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    result = app.test_cli_runner().invoke(args=["posts", "unmark-sent", str(post["id"])])
    assert result.exit_code == 0 and "went out in digest" in result.output
