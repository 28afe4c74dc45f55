"""Strict JSON: what the json module lets through and JSON does not have, and deep nesting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atkproxy.jsonstrict import MAX_DEPTH, NotStrictJSON, depth, loads


def nested(levels: int, open_: str = "[", close: str = "]") -> str:
    return open_ * levels + close * levels


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("NaN", "NaN is not a JSON value"),
        ('{"a": Infinity}', "Infinity is not a JSON value"),
        ("[-Infinity]", "-Infinity is not a JSON value"),
        ("1e999999", "number 1e999999 is out of range"),
        ("[-1e400]", "number -1e400 is out of range"),
        ("1" * 5000, "digits"),
        (nested(MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH} levels"),
        ('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1), "nested deeper"),
        (nested(100_000), "nested deeper"),  # RecursionError inside the json module
        ("{", "Expecting property name"),
        ("", "Expecting value"),
        ("[1,]", "Expecting value"),
    ],
)
def test_refused(text: str, reason: str) -> None:
    with pytest.raises(NotStrictJSON, match=reason):
        loads(text)
    with pytest.raises(ValueError, match=reason):  # a ValueError like the json module's errors
        loads(text.encode())


@pytest.mark.parametrize(
    ("text", "doc"),
    [
        ("1.5e308", 1.5e308),
        ("123456789012345678901234567890", 123456789012345678901234567890),  # exact
        ('"NaN"', "NaN"),
        ('{"x": "[[[[[[[["}', {"x": "[[[[[[[["}),
        ("null", None),
    ],
)
def test_accepted(text: str, doc: Any) -> None:
    assert loads(text) == doc


def test_exactly_the_limit_is_accepted() -> None:
    assert depth(loads(nested(MAX_DEPTH))) == MAX_DEPTH
    many_shallow = "[" + ",".join(["[{}]"] * 1000) + "]"  # many brackets, depth 3
    assert len(loads(many_shallow)) == 1000


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(NotStrictJSON):
        loads(b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("doc", "levels"),
    [(1, 0), ([], 1), ({}, 1), ([{}], 2), ({"a": [1, [2]], "b": {}}, 3), ([[], [[[]]]], 4)],
)
def test_depth(doc: Any, levels: int) -> None:
    assert depth(doc) == levels


JSONISH = st.text(alphabet='[]{}",:0123456789.eE-+ \\naNIfitytrul', max_size=300)


@given(st.binary(max_size=300) | JSONISH)
def test_any_input_is_a_document_or_not_strict_json(data: bytes | str) -> None:
    try:
        doc = loads(data)
    except NotStrictJSON:
        return
    assert depth(doc) <= MAX_DEPTH
