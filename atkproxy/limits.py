"""Limits on async requests (pure checks, and a deadline): header size, path, id, body time.

An async request is recorded, so what it carries is bounded before anything is kept, and its
target must mean one thing to the proxy and the upstream alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Sequence
from typing import TypeVar
from urllib.parse import unquote

from multidict import MultiMapping

from .errors import Rejected
from .settings import IdSource

T = TypeVar("T")


def check_header_size(raw_headers: Iterable[tuple[bytes, bytes]], limit: int) -> None:
    """431 when the header lines (name, ': ', value, CRLF) add up to more than `limit` bytes."""
    total = sum(len(name) + len(value) + 4 for name, value in raw_headers)
    if total > limit:
        raise Rejected(431, f"request headers exceed async.max_headers ({limit} bytes)")


def check_header_text(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """400 when a header's bytes are not UTF-8: they could not reach the upstream unaltered
    (aiohttp reads them with surrogate escapes, and its client drops what it cannot encode)."""
    for name, value in raw_headers:
        if not (name.isascii() and value.isascii()):
            try:
                name.decode("utf-8")
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise Rejected(400, "a request header is not valid UTF-8") from None


def check_path(raw_path: str) -> None:
    """Segments as the upstream gets them: no encoded slash, no `.` or `..` (also encoded)."""
    path = raw_path.split("?", 1)[0]
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in (".", ".."):
            raise Rejected(400, "the path must not have '.' or '..' segments")
        if "/" in decoded or "\\" in decoded:
            raise Rejected(400, "the path must not have an encoded slash")


def check_single_ids(query: MultiMapping[str], sources: Sequence[IdSource]) -> None:
    """An id parameter given twice is ambiguous (the proxy and the upstream may each take one)."""
    for source in sources:
        if source.source == "query" and source.name and len(query.getall(source.name, [])) > 1:
            raise Rejected(400, f"query parameter {source.name!r} is given more than once")


async def within(seconds: float, what: str, awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, or 408 when it takes longer than `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise Rejected(408, f"{what} not received within listen.body_timeout") from None
