"""Raw query strings (pure): parameters set without re-encoding what the client wrote."""

from __future__ import annotations

from urllib.parse import quote, unquote_plus


def with_query_param(query: str, name: str, value: str) -> str:
    """`query` with `name=value` last; other parameters kept byte for byte, same name replaced."""
    kept = [
        part for part in query.split("&") if part and unquote_plus(part.partition("=")[0]) != name
    ]
    return "&".join([*kept, f"{quote(name, safe='')}={quote(value, safe='')}"])
