"""Confirmations rendered once per batch read exactly as the templates render them per reader."""

from __future__ import annotations

import pytest
from flask import Flask

from newsletter.delivery.render import ConfirmBodies

CONTEXT = {"newsletter": "Clinic <News> & Notes", "valid_for": "7 days"}
LINK = 'https://news.example.org/confirm/abc.DEF-_1?utm=a&b="c"'


NAMES = [None, "", "Ann", '<b>Amy & "Co"</b>', "Zoë O'Brien", "0"]


def _templates_own(app: Flask, name: str | None, link: str) -> tuple[str, str]:
    env = app.jinja_env
    values = {**CONTEXT, "name": name, "confirm_url": link}
    return (
        env.get_template("emails/confirm.txt").render(values),
        env.get_template("emails/confirm.html").render(values),
    )


@pytest.mark.parametrize("name", NAMES, ids=["none", "empty", "plain", "markup", "accents", "zero"])
def test_a_reader_copy_equals_the_templates_own_rendering(app: Flask, name: str | None) -> None:
    with app.app_context():
        expected = _templates_own(app, name, LINK)
        text, html = ConfirmBodies(CONTEXT).for_reader(name, LINK)
    assert (text, html) == expected
    if name:
        assert name in text  # the text part is not HTML: nothing escaped there
    assert "&amp;b=&#34;c&#34;" in html  # the link escaped in its href
    if name == '<b>Amy & "Co"</b>':
        assert "&lt;b&gt;Amy &amp; &#34;Co&#34;&lt;/b&gt;" in html and "<b>Amy" not in html


def test_one_batch_serves_every_reader_from_its_two_shared_bodies(app: Flask) -> None:
    """The shared bodies are reused reader after reader: no value leaks into the next copy."""
    bodies = ConfirmBodies(CONTEXT)
    with app.app_context():
        for n, name in enumerate(NAMES * 2):
            link = f"{LINK}&n={n}"
            assert bodies.for_reader(name, link) == _templates_own(app, name, link)
