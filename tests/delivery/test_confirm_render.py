"""Confirmations rendered once per batch read exactly as the templates render them per reader."""

from __future__ import annotations

from flask import Flask

from newsletter.delivery.render import ConfirmBodies

CONTEXT = {"newsletter": "Clinic <News> & Notes", "valid_for": "7 days"}
LINK = 'https://news.example.org/confirm/abc.DEF-_1?utm=a&b="c"'


def _templates_own(app: Flask, link: str) -> tuple[str, str]:
    env = app.jinja_env
    values = {**CONTEXT, "confirm_url": link}
    return (
        env.get_template("emails/confirm.txt").render(values),
        env.get_template("emails/confirm.html").render(values),
    )


def test_a_reader_copy_equals_the_templates_own_rendering(app: Flask) -> None:
    with app.app_context():
        expected = _templates_own(app, LINK)
        text, html = ConfirmBodies(CONTEXT).for_reader(LINK)
    assert (text, html) == expected
    assert LINK in text  # the text part is not HTML: nothing escaped there
    assert "&amp;b=&#34;c&#34;" in html  # the link escaped in its href
    assert "Clinic &lt;News&gt; &amp; Notes" in html


def test_one_batch_serves_every_reader_from_its_shared_body(app: Flask) -> None:
    """The shared body is reused reader after reader: no link leaks into the next copy."""
    bodies = ConfirmBodies(CONTEXT)
    with app.app_context():
        for n in range(4):
            link = f"{LINK}&n={n}"
            assert bodies.for_reader(link) == _templates_own(app, link)


def test_what_a_stranger_types_as_a_name_never_reaches_the_email(app, client, outbox) -> None:
    # Anyone can sign any address up: a name echoed in the confirmation would let them
    # put words and links in an email we send to a stranger.
    planted = "Bob http://news.example.org/confirm/FAKE https://evil.example/x"
    client.post("/subscribe", json={"email": "victim@example.com", "name": planted})
    outbox.dispatch()
    [message] = outbox.messages("victim@example.com")
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "evil.example" not in text + html and "FAKE" not in text + html
    assert text.count("/confirm/") == 1
