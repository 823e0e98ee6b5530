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
