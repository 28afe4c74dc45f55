"""Strict JSON (pure): RFC 8259 documents only, of bounded nesting.

Python's json module accepts `NaN`, `Infinity` and numbers that overflow to infinity, none of
which is JSON (and which it would write back as non-JSON), and recurses once per nesting level,
so a deep document raises RecursionError instead of a ValueError. `loads` turns all of these into
`NotStrictJSON`, a ValueError, so callers handle every bad document in one place.
Integers stay exact (orjson would turn a long one into a float).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

MAX_DEPTH = 64


class NotStrictJSON(ValueError):
    """A document that is not JSON, or nested deeper than allowed."""


def _constant(name: str) -> Any:
    raise NotStrictJSON(f"{name} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJSON(f"number {text[:32]} is out of range")
    return value


def loads(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The document in `data`; NotStrictJSON (a ValueError) when it is not strict JSON."""
    try:
        doc = json.loads(data, parse_constant=_constant, parse_float=_finite)
    except RecursionError:
        raise NotStrictJSON(f"nested deeper than {max_depth} levels") from None
    except NotStrictJSON:
        raise
    except ValueError as exc:  # syntax, encoding, integers of more than 4300 digits
        raise NotStrictJSON(str(exc)) from None
    if _brackets(data) > max_depth and depth(doc) > max_depth:
        raise NotStrictJSON(f"nested deeper than {max_depth} levels")
    return doc


def _brackets(data: bytes | str) -> int:
    """Fewer brackets than the limit cannot nest deeper than it: most documents skip the walk."""
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def depth(doc: Any) -> int:
    """Levels of arrays and objects: a scalar is 0, `[]` is 1, `[{}]` is 2."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = node.values()
        elif not isinstance(node, list):
            continue
        level += 1
        deepest = max(deepest, level)
        stack.extend((child, level) for child in node if isinstance(child, dict | list))
    return deepest


def dumps(doc: Any) -> bytes:
    """`doc` as compact JSON: orjson's speed, json's reach for what orjson refuses (a lone
    surrogate a \\udXXX escape produced, an integer beyond 64 bits)."""
    try:
        return orjson.dumps(doc)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(doc, separators=(",", ":")).encode()
