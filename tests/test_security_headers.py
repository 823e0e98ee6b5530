"""The hosted pages carry a strict Content-Security-Policy; JSON and other HTML do not need it."""

from __future__ import annotations


def test_hosted_pages_carry_a_strict_csp(client):
    for path in ("/subscribe", "/confirm/not-a-token", "/no-such-page"):
        response = client.get(path)
        policy = response.headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in policy, path
        assert "script-src" not in policy, path  # no script at all on our pages
        assert "form-action 'self'" in policy, path
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_json_answers_carry_no_page_policy(client):
    response = client.post("/subscribe", json={"email": "ann@example.com"})
    assert response.status_code == 202
    assert "Content-Security-Policy" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_an_error_page_under_static_is_a_page_like_the_others(client):
    # A 404 under /static/ is our HTML page: it had neither the CSP nor X-Frame-Options.
    missing = client.get("/static/no-such-file.js")
    assert missing.status_code == 404
    assert "default-src 'none'" in missing.headers["Content-Security-Policy"]
    assert missing.headers["X-Frame-Options"] == "DENY"
    with client.get("/static/widget.js") as widget:
        assert widget.status_code == 200
        assert widget.headers["Cross-Origin-Resource-Policy"] == "cross-origin"


def test_https_answers_ask_browsers_to_stay_on_https(make_app):
    # HSTS only where the request came over HTTPS (directly or by a trusted proxy's
    # X-Forwarded-Proto): on plain HTTP a browser ignores it and a local run needs none.
    client = make_app(TRUSTED_PROXY_COUNT=1).test_client()
    secure = client.get("/subscribe", headers={"X-Forwarded-Proto": "https"})
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "Strict-Transport-Security" not in client.get("/subscribe").headers
