"""Bodies spliced from parts encoded once encode exactly as the whole body would."""

from __future__ import annotations

import copy
import enum
import pickle
from collections import OrderedDict

import orjson
import pytest
from markupsafe import escape

from newsletter.delivery.render import MarkedBody, new_mark
from newsletter.providers.encoded import PreEncoded, dumps, json_content

# Everything JSON escapes or a UTF-8 encoder must transcode: quotes, backslashes,
# controls, Latin-1, an en dash, the line separators JavaScript chokes on, and beyond the BMP.
AWKWARD = 'a "quoted" \\ back\tslash\nnew\x00nul\x1f · Zoë \u2013 \u2028\u2029 😀 </script>'


def _marked(marks: tuple[str, ...]) -> MarkedBody:
    text = f"Hello {marks[0]}! {AWKWARD}\n{marks[1]} and {marks[0]} again, at the end {marks[1]}"
    html = f"<p>{AWKWARD}</p><a href='{marks[1]}'>{marks[0]}</a>"
    return MarkedBody(text, html, marks)


@pytest.mark.parametrize(
    "values",
    [("Ann", "https://x.example/u/abc"), (AWKWARD, '<b>"&"</b>'), ("", "")],
    ids=["plain", "awkward", "empty"],
)
def test_a_filled_body_and_its_encoding_say_the_same(values: tuple[str, str]) -> None:
    marks = (new_mark("name"), new_mark("link"))
    text, html = _marked(marks).fill(dict(zip(marks, values, strict=True)))
    name, link = values
    assert text == (
        f"Hello {name}! {AWKWARD}\n{link} and {name} again, at the end {link}"
    )  # every slot filled, the same mark in two places included
    assert html == f"<p>{AWKWARD}</p><a href='{escape(link)}'>{escape(name)}</a>"
    for part in (text, html):
        assert isinstance(part, PreEncoded)
        assert part.json == orjson.dumps(str(part))  # byte for byte what orjson writes


def test_a_body_without_marks_is_one_piece() -> None:
    text, html = MarkedBody(AWKWARD, "<p>x</p>", ()).fill({})
    assert (text, html) == (AWKWARD, "<p>x</p>")
    assert text.json == orjson.dumps(AWKWARD)


def test_a_mark_given_no_value_stays_as_it_was() -> None:
    mark = new_mark("name")
    text, _ = MarkedBody(f"Hi {mark}", "", (mark,)).fill({})
    assert text == f"Hi {mark}" and text.json == orjson.dumps(f"Hi {mark}")


def test_a_payload_with_pre_encoded_parts_encodes_as_plain_strings_would() -> None:
    marks = (new_mark("name"), new_mark("link"))
    text, html = _marked(marks).fill({marks[0]: "Zoë", marks[1]: "https://x.example/u/1"})
    payload = [{"TextBody": text, "HtmlBody": html, "Headers": [{"Name": "X", "Value": text}]}]
    plain = [
        {
            "TextBody": str(text),
            "HtmlBody": str(html),
            "Headers": [{"Name": "X", "Value": str(text)}],
        }
    ]
    assert dumps(payload) == orjson.dumps(plain)
    assert orjson.loads(dumps(payload)) == plain


def test_dumps_takes_the_carried_encoding_as_it_is() -> None:
    """Not encoded again: a (deliberately false) carried encoding is what goes out."""
    assert dumps({"a": PreEncoded("text", b'"carried"')}) == b'{"a":"carried"}'


class Colour(enum.StrEnum):
    RED = "red"


class Label(str):
    pass


class Counted(int):
    pass


def test_other_subclasses_encode_as_their_base_type() -> None:
    payload = {
        "enum": Colour.RED,
        "str": Label("x"),
        "int": Counted(3),
        "dict": OrderedDict(a=Label("y")),
        "list": type("Items", (list,), {})([1]),
    }
    assert orjson.loads(dumps(payload)) == {
        "enum": "red",
        "str": "x",
        "int": 3,
        "dict": {"a": "y"},
        "list": [1],
    }


class Shouting(str):
    def __str__(self) -> str:
        return "OVERRIDDEN"


class Padded(int):
    def __int__(self) -> int:
        return 99


def test_a_subclass_is_encoded_by_its_value_not_its_overrides() -> None:
    assert dumps([Shouting("x"), Padded(3)]) == orjson.dumps(["x", 3]) == b'["x",3]'


def test_a_pre_encoded_string_copies_and_pickles_with_its_encoding() -> None:
    original = PreEncoded("Zoë", b'"carried"')
    for twin in (
        copy.copy(original),
        copy.deepcopy(original),
        pickle.loads(pickle.dumps(original)),  # noqa: S301 (our own bytes, just made)
    ):
        assert twin == "Zoë" and isinstance(twin, PreEncoded) and twin.json == b'"carried"'


def test_what_json_cannot_hold_is_refused() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})


def test_json_content_is_the_inside_of_the_string() -> None:
    assert json_content('say "hi"\n') == b'say \\"hi\\"\\n'
    assert b'"' + json_content(AWKWARD) + b'"' == orjson.dumps(AWKWARD)
