"""Importing posts from RSS 2.0 and Atom feeds served from a local HTTP server."""

from __future__ import annotations

import pytest

from newsletter.digests.feed import author_name
from tests.digests.servers import serve_folder
from tests.servers import free_port

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Clinic Blog</title><link>https://clinic.example.org/</link><description>News</description>
<item>
  <title>Massage Therapy &amp; Running Form: Hip Extension</title>
  <link>https://clinic.example.org/2020/10/hip-extension/</link>
  <guid isPermaLink="false">clinic-post-101</guid>
  <pubDate>Thu, 08 Oct 2020 09:00:00 +0000</pubDate>
  <author>amanda@clinic.example.org (Amanda Kerpius)</author>
  <category>Running</category><category>Rehabilitation</category>
  <description><![CDATA[<p>Both hip flexion <b>and</b> hip extension are needed.</p>
    <script>alert(1)</script>]]></description>
</item>
<item>
  <title>Second post</title>
  <link>https://clinic.example.org/2020/09/second/</link>
  <guid>https://clinic.example.org/?p=100</guid>
  <pubDate>Tue, 08 Sep 2020 09:00:00 +0000</pubDate>
  <description>Plain summary.</description>
</item>
<item><title>No link at all</title><description>dropped</description></item>
<item><title>Hostile link</title><link>javascript:alert(1)</link></item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Clinic Blog</title><id>urn:clinic</id><updated>2020-10-08T09:00:00Z</updated>
  <entry>
    <title>Massage Therapy &amp; Running Form: Hip Extension (Atom)</title>
    <link href="https://clinic.example.org/2020/10/hip-extension/"/>
    <id>urn:clinic:post:101</id>
    <updated>2020-10-08T09:00:00Z</updated>
    <summary type="html">&lt;p&gt;Same post, other id, same URL&lt;/p&gt;</summary>
  </entry>
  <entry>
    <title>Atom only</title>
    <link rel="alternate" href="https://clinic.example.org/2020/11/atom-only/"/>
    <id>urn:clinic:post:102</id>
    <published>2020-11-01T10:00:00+02:00</published>
    <updated>2020-11-02T10:00:00Z</updated>
    <author><name>Dr. Lee</name></author>
    <category term="Yoga"/>
    <content type="html">&lt;h1&gt;Content&lt;/h1&gt; used when there is no summary.</content>
  </entry>
</feed>
"""


@pytest.fixture
def feeds(tmp_path):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "rss.xml").write_text(RSS)
    (folder / "atom.xml").write_text(ATOM)
    (folder / "page.html").write_text("<html><body><p>Not a feed</p></body></html>")
    (folder / "broken.xml").write_text("<rss version='2.0'><channel><item><title>x</ti")
    with serve_folder(folder) as base:
        yield base


def posts(client, headers):
    return client.get("/admin/posts", headers=headers).get_json()["items"]


def test_rss_then_atom_import_dedups_by_guid_then_url(client, admin_headers, feeds):
    first = client.post(
        "/admin/posts/import-feed", json={"url": f"{feeds}/rss.xml"}, headers=admin_headers
    )
    assert first.status_code == 200
    assert first.get_json()["created"] == 2 and first.get_json()["invalid"] == 2
    again = client.post(
        "/admin/posts/import-feed", json={"url": f"{feeds}/rss.xml"}, headers=admin_headers
    ).get_json()
    assert (again["created"], again["duplicates"]) == (0, 2)

    [hip, second] = posts(client, admin_headers)
    assert hip["title"] == "Massage Therapy & Running Form: Hip Extension"
    assert hip["guid"] == "clinic-post-101"
    assert hip["summary"] == "Both hip flexion and hip extension are needed."
    assert hip["published_at"] == "2020-10-08T09:00:00Z"
    assert hip["categories"] == ["Running", "Rehabilitation"]
    assert second["guid"] == "https://clinic.example.org/?p=100"

    atom = client.post(
        "/admin/posts/import-feed", json={"url": f"{feeds}/atom.xml"}, headers=admin_headers
    ).get_json()
    assert (atom["created"], atom["duplicates"]) == (1, 1)  # same URL, other guid: a duplicate
    newest = posts(client, admin_headers)[0]
    assert newest["title"] == "Atom only"
    assert newest["published_at"] == "2020-11-01T08:00:00Z"
    assert newest["author"] == "Dr. Lee" and newest["categories"] == ["Yoga"]
    assert newest["summary"] == "Content used when there is no summary."


def test_a_private_feed_is_reached_with_the_credentials_in_its_url(client, admin_headers, feeds):
    # A user name is refused in a post's link, never in the feed's own address.
    private = feeds.replace("http://", "http://reader:s3cret@")
    answer = client.post(
        "/admin/posts/import-feed", json={"url": f"{private}/rss.xml"}, headers=admin_headers
    )
    assert answer.status_code == 200 and answer.get_json()["created"] == 2


def test_feed_url_setting_is_the_default(make_app, admin_headers, feeds):
    app = make_app(FEED_URL=f"{feeds}/atom.xml")
    response = app.test_client().post("/admin/posts/import-feed", json={}, headers=admin_headers)
    assert response.status_code == 200 and response.get_json()["created"] == 2


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/page.html", 422, "invalid_feed"),
        ("/broken.xml", 422, "invalid_feed"),
        ("/missing.xml", 502, "feed_unreachable"),
    ],
)
def test_broken_feeds_are_clear_errors_that_change_nothing(
    client, admin_headers, feeds, path, status, code
):
    response = client.post(
        "/admin/posts/import-feed", json={"url": f"{feeds}{path}"}, headers=admin_headers
    )
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert posts(client, admin_headers) == []


def test_unreachable_feed_is_502_and_missing_url_is_422(client, admin_headers):
    down = client.post(
        "/admin/posts/import-feed",
        json={"url": f"http://127.0.0.1:{free_port()}/feed"},
        headers=admin_headers,
    )
    assert down.status_code == 502 and down.get_json()["error"]["code"] == "feed_unreachable"
    missing = client.post("/admin/posts/import-feed", json={}, headers=admin_headers)
    assert missing.status_code == 422 and missing.get_json()["error"]["field"] == "url"


def test_cli_imports_a_feed(app, feeds):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["posts", "import-feed", f"{feeds}/rss.xml"])
    assert result.exit_code == 0, result.output
    assert "2 new" in result.output
    bad = runner.invoke(args=["posts", "import-feed", f"{feeds}/page.html"])
    assert bad.exit_code != 0 and "not an RSS or Atom feed" in bad.output


TRICKY_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Blog</title><id>urn:b</id><updated>2024-01-08T09:00:00Z</updated>
  <entry>
    <title type="text">Using &lt;details&gt; in HTML &amp; AT&amp;amp;T</title>
    <link href="https://blog.example.org/details/"/><id>urn:b:1</id>
    <updated>2024-01-08T09:00:00Z</updated>
  </entry>
  <entry>
    <title type="html">&lt;b&gt;Bold&lt;/b&gt; news</title>
    <link href="https://blog.example.org/bold/"/><id>urn:b:2</id>
    <updated>2024-01-07T09:00:00Z</updated>
  </entry>
</feed>
"""

RELATIVE_RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>B</title><link>/</link><description>d</description>
<item><title>Relative link post</title><link>/2024/01/relative/</link>
  <guid isPermaLink="false">rel-1</guid>{categories}</item>
</channel></rss>
"""


def test_titles_as_their_feed_types_them_and_relative_links_resolved(
    client, admin_headers, tmp_path
):
    # A text title is kept as written ("<details>" is text); an HTML one loses its markup.
    # An RSS link relative to the feed resolves against where the feed came from.
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "atom.xml").write_text(TRICKY_ATOM)
    many = "".join(f"<category>c{n}</category>" for n in range(500))
    (folder / "rss.xml").write_text(RELATIVE_RSS.format(categories=many))
    with serve_folder(folder) as base:
        for name in ("atom.xml", "rss.xml"):
            answer = client.post(
                "/admin/posts/import-feed", json={"url": f"{base}/{name}"}, headers=admin_headers
            )
            assert answer.status_code == 200, answer.get_json()
    by_url = {p["url"]: p for p in posts(client, admin_headers)}
    assert by_url["https://blog.example.org/details/"]["title"] == (
        "Using <details> in HTML & AT&amp;T"
    )
    assert by_url["https://blog.example.org/bold/"]["title"] == "Bold news"
    relative = by_url[f"{base}/2024/01/relative/"]
    assert relative["title"] == "Relative link post"
    assert len(relative["categories"]) == 20  # the admin API's cap, for feeds too


def test_a_feed_that_trickles_in_is_cut_at_the_timeout(make_app, admin_headers):
    # FEED_TIMEOUT bounds the whole fetch: a byte every 50 ms must not hold the request.
    import socket
    import threading
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def trickle() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n\r\n")
            try:
                for byte in RSS.encode():
                    connection.sendall(bytes([byte]))
                    time.sleep(0.05)
            except OSError:
                pass  # the client gave up, as it should

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    app = make_app(FEED_TIMEOUT=1.0)
    started = time.monotonic()
    answer = app.test_client().post(
        "/admin/posts/import-feed",
        json={"url": f"http://127.0.0.1:{port}/rss.xml"},
        headers=admin_headers,
    )
    took = time.monotonic() - started
    listener.close()
    assert answer.status_code == 502 and "took over 1 s" in answer.get_json()["error"]["message"]
    assert took < 5  # the whole feed would take about 80 s at this pace


def test_a_feed_url_is_fetched_as_validated_without_its_surrounding_spaces(
    client, admin_headers, feeds
):
    answer = client.post(
        "/admin/posts/import-feed", json={"url": f" {feeds}/rss.xml\n "}, headers=admin_headers
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["created"] == 2


def test_relative_links_of_a_private_feed_resolve_without_its_credentials(
    client, admin_headers, tmp_path
):
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "rel.xml").write_text(RELATIVE_RSS.format(categories=""))
    with serve_folder(folder) as base:
        private = base.replace("http://", "http://reader:s3cret@")
        answer = client.post(
            "/admin/posts/import-feed", json={"url": f"{private}/rel.xml"}, headers=admin_headers
        ).get_json()
    assert (answer["created"], answer["invalid"]) == (1, 0)
    assert [p["url"] for p in posts(client, admin_headers)] == [f"{base}/2024/01/relative/"]


AUTHORS_RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>B</title><link>https://b.example/</link><description>d</description>
{items}
</channel></rss>
"""

BLOGGER_ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Blog</title><id>urn:b</id><updated>2024-01-08T09:00:00Z</updated>
  <entry>
    <title>Blogger post</title><link href="https://b.example/blogger/"/><id>urn:b:1</id>
    <updated>2024-01-08T09:00:00Z</updated>
    <author><name>Jane</name><email>noreply@blogger.com</email></author>
  </entry>
  <entry>
    <title>Address only</title><link href="https://b.example/address/"/><id>urn:b:2</id>
    <updated>2024-01-07T09:00:00Z</updated>
    <author><email>noreply@blogger.com</email></author>
  </entry>
</feed>
"""


def test_a_feed_authors_name_is_kept_and_their_email_address_never(client, admin_headers, tmp_path):
    # Every copy of a digest shows the author: an address there is a leak (and spam bait).
    authors = [
        "jane@clinic.example (Jane Doe)",
        "Jane Doe &lt;jane@clinic.example&gt;",
        "mailto:jane@clinic.example",
        "Jane Doe (Editor)",
    ]
    items = "".join(
        f"<item><title>Post {n}</title><link>https://b.example/{n}/</link>"
        f"<pubDate>Mon, 0{n + 1} Jan 2024 09:00:00 +0000</pubDate><author>{author}</author></item>"
        for n, author in enumerate(authors)
    )
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "rss.xml").write_text(AUTHORS_RSS.format(items=items))
    (folder / "atom.xml").write_text(BLOGGER_ATOM)
    with serve_folder(folder) as base:
        for name in ("rss.xml", "atom.xml"):
            answer = client.post(
                "/admin/posts/import-feed", json={"url": f"{base}/{name}"}, headers=admin_headers
            )
            assert answer.status_code == 200, answer.get_json()
    by_url = {p["url"]: p["author"] for p in posts(client, admin_headers)}
    assert [by_url[f"https://b.example/{n}/"] for n in range(4)] == [
        "Jane Doe",
        "Jane Doe",
        None,
        "Jane Doe (Editor)",
    ]
    assert by_url["https://b.example/blogger/"] == "Jane"
    assert by_url["https://b.example/address/"] is None


@pytest.mark.parametrize(
    "date", ["<pubDate>Mon, 08 Jan 2024 09:00:00 +0000</pubDate>", ""], ids=["same", "none"]
)
def test_posts_of_one_date_or_none_are_listed_in_the_feeds_order(
    client, admin_headers, tmp_path, date
):
    # A feed lists its newest first; among equal dates the admin list breaks ties by id.
    items = "".join(
        f"<item><title>{title}</title><link>https://b.example/{title}/</link>{date}</item>"
        for title in ("third", "second", "first")
    )
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "rss.xml").write_text(AUTHORS_RSS.format(items=items))
    with serve_folder(folder) as base:
        answer = client.post(
            "/admin/posts/import-feed", json={"url": f"{base}/rss.xml"}, headers=admin_headers
        ).get_json()
    assert [p["title"] for p in answer["posts"]] == ["third", "second", "first"]
    listed = [p["title"] for p in posts(client, admin_headers)]
    assert listed == ["third", "second", "first"]


def test_a_long_import_commits_as_it_goes_so_other_writers_get_their_turn(
    client, admin_headers, tmp_path, monkeypatch, database_uri
):
    # What another connection sees after each commit: the posts stored so far.
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.orm import Session

    from newsletter.digests import feed

    # raising=False: without chunks the test fails on what the other connection saw.
    monkeypatch.setattr(feed, "STORE_CHUNK", 2, raising=False)
    other = create_engine(database_uri)
    seen: list[int] = []

    def count_posts(session: Session) -> None:
        with other.connect() as connection:
            seen.append(connection.execute(text("SELECT count(*) FROM posts")).scalar_one())

    items = "".join(
        f"<item><title>Post {n}</title><link>https://b.example/{n}/</link>"
        f"<guid>post-{n}</guid></item>"
        for n in range(5)
    )
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "rss.xml").write_text(AUTHORS_RSS.format(items=items))
    event.listen(Session, "after_commit", count_posts)
    try:
        with serve_folder(folder) as base:
            answers = [
                client.post(
                    "/admin/posts/import-feed",
                    json={"url": f"{base}/rss.xml"},
                    headers=admin_headers,
                ).get_json()
                for _ in range(2)
            ]
    finally:
        event.remove(Session, "after_commit", count_posts)
        other.dispose()
    assert seen[:3] == [2, 4, 5]
    assert [(a["created"], a["duplicates"]) for a in answers] == [(5, 0), (0, 5)]
    assert [p["title"] for p in answers[0]["posts"]] == [f"Post {n}" for n in range(5)]


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Jane Doe @jane@mastodon.social", "Jane Doe"),
        ("@jane@mastodon.social", None),
        ("Jane (@jane@mastodon.social)", "Jane"),
        ("Jane Doe (via jane@x.example)", "Jane Doe"),
        ("Jane Doe (contact: jane@x.example)", "Jane Doe"),
        ("@jane", "@jane"),  # a handle without a host names nobody's inbox
        ("Jane (Editor)", "Jane (Editor)"),
    ],
)
def test_a_fediverse_handle_or_a_via_address_leaves_no_trace(raw, name):
    assert author_name(raw) == name
