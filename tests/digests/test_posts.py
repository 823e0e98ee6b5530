"""Posts through the admin API: created once per URL, validated, listed newest first."""

from __future__ import annotations

import pytest

from tests.digests.helpers import add_confirmed, add_post


def test_same_url_twice_is_one_post(client, admin_headers):
    first = add_post(client, admin_headers, 1)
    again = client.post(
        "/admin/posts",
        json={"title": "Another title", "url": "https://blog.example.org/post-1"},
        headers=admin_headers,
    )
    assert again.status_code == 200
    assert again.get_json()["id"] == first["id"]
    assert again.get_json()["title"] == "Post 1"
    listing = client.get("/admin/posts", headers=admin_headers).get_json()
    assert listing["total"] == 1


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"url": "https://blog.example.org/x"}, "missing_title", "title"),
        ({"title": "T"}, "missing_url", "url"),
        ({"title": "T", "url": "javascript:alert(1)"}, "invalid_url", "url"),
        ({"title": "T", "url": "ftp://blog.example.org/x"}, "invalid_url", "url"),
        ({"title": "T", "url": "https:///nohost"}, "invalid_url", "url"),
        (
            {"title": "T", "url": "https://b.org/x", "published_at": "yesterday"},
            "invalid_published_at",
            "published_at",
        ),
        (
            {"title": "T", "url": "https://b.org/x", "categories": "news"},
            "invalid_categories",
            "categories",
        ),
        ({"title": 5, "url": "https://b.org/x"}, "invalid_title", "title"),
        (  # a time whose offset takes it past the calendar's end, in UTC
            {"title": "T", "url": "https://b.org/x", "published_at": "9999-12-31T23:59:59-01:00"},
            "invalid_published_at",
            "published_at",
        ),
        (
            {"title": "T", "url": "https://b.org/x", "published_at": "0001-01-01T00:00:00+01:00"},
            "invalid_published_at",
            "published_at",
        ),
    ],
)
def test_invalid_posts_are_422_with_code_and_field(client, admin_headers, body, code, field):
    response = client.post("/admin/posts", json=body, headers=admin_headers)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)


@pytest.mark.parametrize(
    "url",
    [
        "http://exa mple.com/p",
        "http://a.example:99999/x",
        "http://a.example:abc/x",
        "http://a.example:0/x",
        "http://a..b/p",
        "http://./p",
        "http://%00a.example/p",
        "https://bank.example@evil.example/login",
        "http://[::zz]/x",
        "http://256.256.256.256/x",
        "http://1.2.3/x",
    ],
)
def test_a_link_that_names_no_host_a_reader_could_reach_is_refused(client, admin_headers, url):
    response = client.post("/admin/posts", json={"title": "T", "url": url}, headers=admin_headers)
    assert response.status_code == 422, url
    assert response.get_json()["error"]["code"] == "invalid_url"
    assert client.get("/admin/posts", headers=admin_headers).get_json()["total"] == 0


def test_scheme_and_host_case_make_no_second_post_and_a_foreign_host_is_kept_as_xn(
    client, admin_headers
):
    first = client.post(
        "/admin/posts", json={"title": "T", "url": "http://a.example/X"}, headers=admin_headers
    )
    again = client.post(
        "/admin/posts", json={"title": "T", "url": "HTTP://A.Example/X"}, headers=admin_headers
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["url"] == "http://a.example/X"  # the path keeps its case
    foreign = client.post(
        "/admin/posts",
        json={"title": "B", "url": "https://bücher.example/ü"},
        headers=admin_headers,
    )
    assert foreign.get_json()["url"] == "https://xn--bcher-kva.example/%C3%BC"


@pytest.mark.parametrize(
    ("spelling", "kept"),
    [
        ("https://a.example:443/x", "https://a.example/x"),
        ("http://a.example:80/x", "http://a.example/x"),
        ("https://a.example", "https://a.example/"),
        ("https://a.example:443?p=1", "https://a.example/?p=1"),
    ],
)
def test_a_default_port_or_an_empty_path_makes_no_second_post(
    client, admin_headers, spelling, kept
):
    first = client.post("/admin/posts", json={"title": "T", "url": kept}, headers=admin_headers)
    again = client.post("/admin/posts", json={"title": "T", "url": spelling}, headers=admin_headers)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json()["id"] == first.get_json()["id"]
    assert again.get_json()["url"] == kept


def test_a_port_other_than_the_default_stays_part_of_the_link(client, admin_headers):
    response = client.post(
        "/admin/posts",
        json={"title": "T", "url": "https://a.example:8443/x"},
        headers=admin_headers,
    )
    assert response.get_json()["url"] == "https://a.example:8443/x"
    plain = client.post(
        "/admin/posts", json={"title": "T", "url": "http://a.example:443/x"}, headers=admin_headers
    )
    assert plain.get_json()["url"] == "http://a.example:443/x"  # 443 is no default for http


def test_summary_is_cleaned_of_markup_and_shortened(client, admin_headers):
    post = add_post(
        client,
        admin_headers,
        1,
        summary="<p>Hip <b>extension</b> &amp; running<script>alert(1)</script></p>"
        + " word" * 200,
    )
    assert post["summary"].startswith("Hip extension & running word")
    assert "<" not in post["summary"] and "alert" not in post["summary"]
    assert len(post["summary"]) <= 301 and post["summary"].endswith("…")


def test_summary_markup_that_separates_words_leaves_a_space(client, admin_headers):
    # Blocks and line breaks part words on a page; stripped bare, they ran them together.
    post = add_post(
        client,
        admin_headers,
        1,
        summary="<h2>Heading</h2>Body text.<p>Para one.</p><p class='x'>Para two.</p>"
        "line one<br>line two<ul><li>Apples</li><li>Pears</li></ul>"
        "<b>In</b><i>line</i> &lt;p&gt; stays",
    )
    assert post["summary"] == (
        "Heading Body text. Para one. Para two. line one line two Apples Pears Inline <p> stays"
    )


def test_listing_is_newest_first_and_says_what_went_out(client, admin_headers, app):
    from tests.digests.helpers import add_confirmed

    add_confirmed(app, 1)
    add_post(client, admin_headers, 1)
    add_post(client, admin_headers, 3)
    assert client.post("/admin/digests", headers=admin_headers).status_code == 202
    add_post(client, admin_headers, 2)
    items = client.get("/admin/posts", headers=admin_headers).get_json()["items"]
    assert [p["title"] for p in items] == ["Post 3", "Post 2", "Post 1"]
    assert [p["sent"] for p in items] == [True, False, True]


def test_posts_need_the_admin_token(client):
    assert client.get("/admin/posts").status_code == 401
    assert client.post("/admin/digests").status_code == 401


@pytest.mark.parametrize("body", ["[" * 40_000, '{"title": "\\ud800", "url": "https://b.org/x"}'])
def test_unreadable_json_is_a_400_not_a_500(client, admin_headers, body):
    response = client.post(
        "/admin/posts", data=body, content_type="application/json", headers=admin_headers
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"
    assert client.get("/admin/posts", headers=admin_headers).get_json()["total"] == 0


def test_control_characters_never_reach_a_stored_post(client, admin_headers):
    post = add_post(client, admin_headers, 1, title="Bell\x07 and NUL\x00 here", summary="a\x00b")
    assert post["title"] == "Bell and NUL here" and post["summary"] == "ab"


@pytest.mark.parametrize(
    "path", ["/admin/posts", "/admin/posts/import-feed", "/admin/digests", "/admin/digests/1/test"]
)
@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ('{"title": "T"}', "text/plain", 415, "unsupported_media_type"),
        ("{not json", "application/json", 400, "invalid_json"),
        ('["a list"]', "application/json", 400, "invalid_json"),
        ("null", "application/json", 400, "invalid_json"),
    ],
)
def test_every_admin_json_endpoint_answers_a_bad_body_alike(
    app, client, admin_headers, path, body, content_type, status, code
):
    add_post(client, admin_headers, 1)
    add_confirmed(app, 1)
    digest = client.post("/admin/digests", json={}, headers=admin_headers)
    assert digest.status_code == 202  # digest 1, for its test copy
    response = client.post(path, data=body, content_type=content_type, headers=admin_headers)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_a_feed_url_that_is_not_text_is_named_as_such(client, admin_headers):
    response = client.post("/admin/posts/import-feed", json={"url": 5}, headers=admin_headers)
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "invalid_url"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"title": "T" * 501}, "invalid_title"),
        ({"author": "A" * 201}, "invalid_author"),
        ({"categories": ["c" * 101]}, "invalid_categories"),
        ({"categories": [f"c{n}" for n in range(21)]}, "invalid_categories"),  # was cut to 20
    ],
)
def test_an_admins_field_past_its_limit_is_refused_not_cut(client, admin_headers, fields, code):
    """The admin's own post lost the end of its title unseen: now a 422 says which field."""
    body = {"title": "Fine", "url": "https://blog.example/long", **fields}
    answer = client.post("/admin/posts", json=body, headers=admin_headers)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["code"] == code
    assert client.get("/admin/posts", headers=admin_headers).get_json()["total"] == 0
    at_limit = {"title": "T" * 500, "url": "https://blog.example/ok", "author": "A" * 200}
    assert client.post("/admin/posts", json=at_limit, headers=admin_headers).status_code == 201


def test_a_digest_subject_past_its_limit_is_refused_not_cut(app, client, admin_headers):
    add_post(client, admin_headers, 1)
    add_confirmed(app, 1)
    answer = client.post("/admin/digests", json={"subject": "S" * 201}, headers=admin_headers)
    assert answer.status_code == 422
    assert answer.get_json()["error"]["field"] == "subject"
    assert client.get("/admin/digests", headers=admin_headers).get_json()["items"] == []


def test_a_link_too_long_once_encoded_says_so(client, admin_headers):
    url = "https://blog.example.org/" + "\u00fc" * 721  # 746 characters, 4,351 encoded
    response = client.post("/admin/posts", json={"title": "T", "url": url}, headers=admin_headers)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_url" and error["field"] == "url"
    assert "at most 2,048 characters once percent-encoded (this one is 4,351)" in error["message"]


def test_a_trigger_with_only_scheduled_posts_says_when_they_can_go(client, admin_headers):
    post = {"title": "Later", "url": "https://blog.example.org/later"}
    post["published_at"] = "2099-01-02T03:04:00Z"
    assert client.post("/admin/posts", json=post, headers=admin_headers).status_code == 201
    answer = client.post("/admin/digests", json={}, headers=admin_headers)
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "no_new_posts"
    assert error["message"] == (
        "Every post has gone out already (or was marked as sent), but for 1 scheduled for later: "
        "the first can go from 2099-01-02 03:04 UTC."
    )
