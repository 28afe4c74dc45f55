"""A job's answer is read whole and held once (upstream.read_limited), with an in-memory Answer."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from atkproxy.jobs import Headers
from atkproxy.upstream import AnswerTooLarge, declared_length, read_limited

MIB = 1024 * 1024


class MemoryAnswer:
    """An answer whose body comes as the given chunks; counts what was read of it."""

    def __init__(self, pairs: Headers, chunks: list[bytes]) -> None:
        self.status = 200
        self.reason = "OK"
        self.pairs = pairs
        self.complete = False
        self._chunks = chunks
        self.read = 0

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return CIMultiDictProxy(CIMultiDict(self.pairs))

    def ready_body(self) -> bytes:
        raise NotImplementedError

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.read += 1
            yield chunk


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], None),
        ([("Content-Length", "0")], 0),
        ([("content-length", " 1234 ")], 1234),
        ([("Content-Length", "5"), ("Content-Length", "5")], 5),
        ([("Content-Length", "5"), ("Content-Length", "6")], None),
        ([("Content-Length", "5"), ("Transfer-Encoding", "chunked")], None),
        ([("Transfer-Encoding", "chunked")], None),
        ([("Content-Length", "-1")], None),
        ([("Content-Length", "1e3")], None),
        ([("Content-Length", "١٢")], None),  # digits, but not ASCII ones
        ([("Content-Length", "")], None),
        ([("Content-Type", "text/plain")], None),
    ],
)
def test_declared_length(pairs: Headers, expected: int | None) -> None:
    assert declared_length(pairs) == expected


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "unknown-length"])
@pytest.mark.parametrize("size", [0, 1, 65_536, 3 * MIB + 7])
async def test_the_body_comes_back_byte_exact(length: bool, size: int) -> None:
    data = os.urandom(size)
    pairs = [("Content-Length", str(size))] if length else []

    body = await read_limited(MemoryAnswer(pairs, pieces(data, 65_536)), 4 * MIB)

    assert body == data


async def test_an_answer_shorter_than_its_length_keeps_what_came() -> None:
    # a HEAD, 204 or 304 answer carries a Content-Length and no body
    answer = MemoryAnswer([("Content-Length", "1000")], [b"abc"])

    assert await read_limited(answer, 4096) == b"abc"


async def test_an_answer_longer_than_its_length_keeps_all_that_came_within_the_limit() -> None:
    answer = MemoryAnswer([("Content-Length", "3")], [b"abc", b"def"])

    assert await read_limited(answer, 4096) == b"abcdef"


async def test_a_content_length_over_the_limit_is_refused_before_the_body_is_read() -> None:
    answer = MemoryAnswer([("Content-Length", str(10 * MIB))], [b"x" * 1024])

    with pytest.raises(AnswerTooLarge, match=r"exceeds async.max_result \(1024 bytes\)"):
        await read_limited(answer, 1024)
    assert answer.read == 0


@pytest.mark.parametrize("pairs", [[], [("Content-Length", "10")]])
async def test_a_body_over_the_limit_is_refused_as_it_comes(pairs: Headers) -> None:
    answer = MemoryAnswer(pairs, [b"x" * 600, b"x" * 600, b"x" * 600])

    with pytest.raises(AnswerTooLarge):
        await read_limited(answer, 1000)
    assert answer.read == 2


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "unknown-length"])
async def test_a_large_answer_is_held_once_while_read(length: bool) -> None:
    size = 8 * MIB
    chunk = b"x" * 65_536
    pairs = [("Content-Length", str(size))] if length else []
    answer = MemoryAnswer(pairs, [chunk] * (size // len(chunk)))
    tracemalloc.start()
    try:
        body = await read_limited(answer, size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert len(body) == size
    # copying a buffer into bytes at the end, or joining a list of chunks, holds the answer
    # twice at that moment
    assert type(body) is bytes
    assert peak < 1.3 * size, f"{peak / MIB:.1f} MiB to read {size / MIB:.0f} MiB"
