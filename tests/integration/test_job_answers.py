"""A job's answer through both upstream clients against a raw server on 127.0.0.1: read whole
and byte-exact whatever its framing, refused at its head when its length is over the limit."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from atkproxy.aioclient import AiohttpUpstream
from atkproxy.http1 import Http1Upstream
from atkproxy.jobs import UpstreamRequest

Answerer = Callable[[asyncio.StreamWriter], Awaitable[None]]
Client = Http1Upstream | AiohttpUpstream
TOO_LARGE = "upstream answer exceeds async.max_result (1048576 bytes)"
BODY = os.urandom(3 * 1024 * 1024 + 11)


@asynccontextmanager
async def answering(answer: Answerer) -> AsyncIterator[str]:
    """A server that reads a request head (no body) and runs `answer`, then hangs up."""
    held: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        held.append(writer)
        await answer(writer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        for writer in held:
            writer.close()


@pytest.fixture(params=["http1", "aiohttp"])
def client_of(request: pytest.FixtureRequest) -> Callable[[str], Client]:
    kind = Http1Upstream if request.param == "http1" else AiohttpUpstream
    return lambda url: kind(url, 10.0, 2.0, 2)


async def call(client: Client, limit: int) -> tuple[int, bytes | bytearray, str | None]:
    try:
        result = await client.call(UpstreamRequest("POST", "/run", [], b""), limit)
    finally:
        await client.close()
    return result.status, result.body, result.error


async def chunked(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(BODY), 100_003):
        piece = BODY[i : i + 100_003]
        writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
        await writer.drain()
    writer.write(b"0\r\n\r\n")


async def until_close(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
    for i in range(0, len(BODY), 70_001):
        writer.write(BODY[i : i + 70_001])
        await writer.drain()


async def with_length(writer: asyncio.StreamWriter) -> None:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY))
    writer.write(BODY)


@pytest.mark.parametrize("answer", [chunked, until_close, with_length])
async def test_an_answer_of_any_framing_is_read_whole(
    answer: Answerer, client_of: Callable[[str], Client]
) -> None:
    async with answering(answer) as url:
        status, body, error = await call(client_of(url), len(BODY))

    assert (status, error) == (200, None)
    assert body == BODY


async def test_an_answer_whose_length_is_over_the_limit_is_refused_at_its_head(
    client_of: Callable[[str], Client],
) -> None:
    sent_head = asyncio.Event()
    body_wanted = asyncio.Event()  # never set: the body would wait for the client's timeout

    async def head_only(writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (1 << 30))
        sent_head.set()
        await body_wanted.wait()

    async with answering(head_only) as url:
        async with asyncio.timeout(5):  # under the client's 10 s read timeout
            status, _, error = await call(client_of(url), 1 << 20)

    assert sent_head.is_set()
    assert (status, error) == (502, TOO_LARGE)


async def test_an_answer_without_a_length_over_the_limit_is_refused(
    client_of: Callable[[str], Client],
) -> None:
    async with answering(chunked) as url:
        status, _, error = await call(client_of(url), 1 << 20)

    assert (status, error) == (502, TOO_LARGE)
