"""The front door (front.py): plain pass-through on atkproxy's own protocol answers exactly
as aiohttp's path does, and hands everything else over without losing a byte.

The differential: each request is sent alone in one write (served by `front.Front`) and,
on a fresh connection, twice in one write (pipelined: the connection goes to aiohttp's
protocol, which answers both). The upstream is a raw socket server with fixed answers, so
that nothing but the proxy differs; the answers must match but for the Date."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httptools
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from atkproxy.app import create_app
from atkproxy.front import Front
from atkproxy.inflight import InFlight
from atkproxy.observability import ACCESS, AccessLogger
from atkproxy.server import ProxyRunner

from .conftest import ProxyFactory, proxy_settings
from .support import EXTENSION_HEADER_NAMES, HEADER_VALUES, until

LARGE = bytes(range(256)) * 4096  # 1 MiB

ANSWERS: dict[str, bytes] = {
    "/json": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
    b'{"a": true}',
    "/untyped": b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
    "/empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    "/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    "/nocontent": b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
    "/notmodified": b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 10\r\n\r\n',
    "/reason": b"HTTP/1.1 201 Made It\r\nContent-Length: 2\r\nLocation: /x\r\n\r\nok",
    "/hop": b"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: s\r\nKeep-Alive: timeout=5\r\n"
    b"Server: upstream/1\r\nDate: Mon, 30 Nov 2026 00:00:00 GMT\r\nX-Multi: 1\r\nX-Multi: 2\r\n"
    b"Content-Length: 2\r\n\r\nok",
    "/large": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%b" % (len(LARGE), LARGE),
    "/error": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 4\r\n\r\n"
    b"busy",
}


@dataclass
class RawUpstream:
    """Answers each request with ANSWERS[path]; records what it got. `/hold` is answered as
    `/json` once `release` is set."""

    seen: list[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]] = field(default_factory=list)
    server: asyncio.Server | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            async for method, target, headers, body in _requests(reader):
                self.seen.append((method, target, headers, body))
                path = target.decode().partition("?")[0]
                if path == "/hold":
                    await self.release.wait()
                writer.write(ANSWERS["/json" if path == "/hold" else path])
                await writer.drain()
        writer.close()


async def _requests(
    reader: asyncio.StreamReader,
) -> AsyncIterator[tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]]:
    done: list[Any] = []
    parts: dict[str, Any] = {"url": b"", "headers": [], "body": b""}

    class Callbacks:
        def on_url(self, url: bytes) -> None:
            parts["url"] += url

        def on_header(self, name: bytes, value: bytes) -> None:
            parts["headers"].append((name, value))

        def on_body(self, body: bytes) -> None:
            parts["body"] += body

        def on_message_complete(self) -> None:
            method = parser.get_method()
            done.append((method, parts["url"], parts["headers"], parts["body"]))
            parts.update(url=b"", headers=[], body=b"")

    parser = httptools.HttpRequestParser(Callbacks())
    while data := await reader.read(65536):
        parser.feed_data(data)
        while done:
            yield done.pop(0)


@dataclass
class Reply:
    status_line: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes  # as framed on the wire

    def comparable(self) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        kept = sorted((k.lower(), v) for k, v in self.headers if k.lower() != b"date")
        return self.status_line, kept, self.body

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k.lower() == name), None)


async def read_reply(reader: asyncio.StreamReader, head_only: bool = False) -> Reply:
    head = await reader.readuntil(b"\r\n\r\n")
    while head.startswith(b"HTTP/1.1 1"):  # an interim answer (100 Continue): the next
        head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].split(b"\r\n")
    headers = [(k, v.strip()) for k, _, v in (line.partition(b":") for line in lines)]
    reply = Reply(status_line, headers, b"")
    status = int(status_line.split()[1])
    if head_only or status in (204, 304):
        return reply
    length = reply.header(b"content-length")
    if length is not None:
        reply.body = await reader.readexactly(int(length))
    elif reply.header(b"transfer-encoding") == b"chunked":
        while (line := await reader.readuntil(b"\r\n")) != b"0\r\n":
            reply.body += line + await reader.readexactly(int(line, 16) + 2)
        reply.body += line + await reader.readuntil(b"\r\n")
    else:
        reply.body = await reader.read()
    return reply


def request(method: str, target: str, extra: str = "", body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
    head = f"{method} {target} HTTP/1.1\r\nHost: svc.example\r\n{extra}{length}\r\n"
    return head.encode() + body


def served_by(client: TestClient[Any, Any], writer: asyncio.StreamWriter) -> str:
    """The class of the server's protocol on the other end of `writer`'s connection."""
    conn = front_of(client, writer)
    return "gone" if conn is None else type(conn).__name__


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()
    yield upstream
    assert upstream.server is not None
    upstream.server.close()


@pytest.fixture
async def front(raw_upstream: RawUpstream, make_proxy: ProxyFactory) -> TestClient[Any, Any]:
    return await make_proxy(await raw_upstream.start(), automatiko=False)


async def connect(
    client: TestClient[Any, Any],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(client.server.host, client.server.port)


CASES = [
    ("GET", "/json", "", b""),
    ("GET", "/untyped", "", b""),
    ("GET", "/empty", "", b""),
    ("GET", "/chunked", "", b""),
    ("GET", "/nocontent", "", b""),
    ("GET", "/notmodified", 'If-None-Match: "x"\r\n', b""),
    ("HEAD", "/json", "", b""),
    ("HEAD", "/notmodified", "", b""),
    ("POST", "/reason", "Content-Type: application/json\r\n", b'{"order": 1}'),
    ("PUT", "/json", "", b""),
    ("DELETE", "/hop", "Connection: X-Secret\r\nX-Secret: 1\r\nTE: trailers\r\n", b""),
    ("GET", "/large", "", b""),
    ("GET", "/error", "", b""),
    ("GET", "/json", "Connection: close\r\n", b""),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{m} {t} {e!r}" for m, t, e, _ in CASES])
async def test_the_front_answers_as_aiohttps_path_does(
    front: TestClient[Any, Any], raw_upstream: RawUpstream, case: tuple[str, str, str, bytes]
) -> None:
    await both_ways(front, raw_upstream, *case)


async def both_ways(
    front: TestClient[Any, Any],
    raw_upstream: RawUpstream,
    method: str,
    target: str,
    extra: str,
    body: bytes,
) -> None:
    """The request alone (the front answers), then twice in one write on a fresh connection
    (aiohttp's protocol answers): the same answers, and the upstream got the same requests."""
    data, head_only = request(method, target, extra, body), method == "HEAD"
    seen = len(raw_upstream.seen)
    reader, writer = await connect(front)
    writer.write(data)
    alone = await read_reply(reader, head_only)
    closes = "close" in extra
    assert served_by(front, writer) in (("Front", "gone") if closes else ("Front",))
    writer.close()

    reader, writer = await connect(front)
    if closes:  # nothing may follow it: the mode header sends it down aiohttp's path
        writer.write(request(method, target, extra + "X-ATK-Mode: sync\r\n", body))
        first = await read_reply(reader, head_only)
    else:
        writer.write(data + data)  # two in one read: aiohttp's protocol answers both
        first = await read_reply(reader, head_only)
        assert served_by(front, writer) == "GuardedHandler"
        assert (await read_reply(reader, head_only)).comparable() == first.comparable()
    writer.close()

    assert alone.comparable() == first.comparable()
    assert alone.header(b"date") is not None
    ours, theirs = raw_upstream.seen[seen : seen + 2]
    assert ours[:2] == theirs[:2] == (method.encode(), target.encode())
    assert ours[2] == theirs[2]  # the same headers, in the same order
    assert ours[3] == theirs[3] == body


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    headers=st.lists(
        st.tuples(
            st.one_of(
                EXTENSION_HEADER_NAMES,
                st.sampled_from(["Accept", "User-Agent", "Cookie", "Authorization", "Forwarded",
                                 "X-Forwarded-For", "X-Forwarded-Proto", "Content-Type", "TE"]),
            ),
            HEADER_VALUES,
        ),
        max_size=12,
        unique_by=lambda pair: pair[0].lower(),  # no repeated singleton (aiohttp refuses it)
    ),
    size=st.integers(0, 3000),
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    target=st.sampled_from(sorted(ANSWERS)),
)  # fmt: skip
async def test_any_plain_request_is_answered_as_aiohttp_answers_it(
    front: TestClient[Any, Any],
    raw_upstream: RawUpstream,
    headers: list[tuple[str, str]],
    size: int,
    method: str,
    target: str,
) -> None:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    body = bytes(i % 251 for i in range(size))
    await both_ways(front, raw_upstream, method, target, extra, body)


HANDED_OVER = [
    (request("GET", "/json", "X-ATK-Mode: sync\r\n"), "the mode header"),
    (request("GET", "/json", "Prefer: respond-async\r\n"), "Prefer"),
    (request("GET", "/j%73on"), "an escape in the target"),
    (request("GET", "/_atk/health"), "the management prefix"),
    (b"GET /json HTTP/1.0\r\nHost: a\r\n\r\n", "HTTP/1.0"),
    (b"GET /json HTTP/1.1\r\n\r\n", "no Host"),
    (
        b"POST /json HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        "a chunked body",
    ),
    (request("POST", "/json", "Content-Type: text/plain\r\n", b"x" * 70_000), "a large body"),
    (request("GET", "/json", "Host: b\r\n"), "two Host headers"),
    (request("GET", "/json", "Expect: 100-continue\r\n"), "Expect"),
    (request("GET", "/json", "Connection: Upgrade\r\nUpgrade: websocket\r\n"), "an upgrade"),
    (request("GET", "http://svc.example/json"), "an absolute target"),
]


@pytest.mark.parametrize(("data", "why"), HANDED_OVER, ids=[why for _, why in HANDED_OVER])
async def test_what_the_front_does_not_serve_goes_to_aiohttp_whole(
    front: TestClient[Any, Any], data: bytes, why: str
) -> None:
    reader, writer = await connect(front)
    writer.write(data)
    reply = await read_reply(reader)
    assert served_by(front, writer) in ("GuardedHandler", "gone"), why
    assert reply.status_line.startswith(b"HTTP/1."), why
    writer.close()


async def test_a_request_split_across_reads_is_handed_over_whole(
    front: TestClient[Any, Any], raw_upstream: RawUpstream
) -> None:
    reader, writer = await connect(front)
    data = request("POST", "/reason", "", b'{"order": 2}')
    writer.write(data[:20])
    await writer.drain()
    # the first bytes are read, and the head is incomplete
    await until(lambda: served_by(front, writer) == "GuardedHandler")
    writer.write(data[20:])
    reply = await read_reply(reader)
    assert reply.status_line == b"HTTP/1.1 201 Made It" and reply.body == b"ok"
    assert raw_upstream.seen[-1][3] == b'{"order": 2}'
    writer.close()


async def test_keep_alive_requests_stay_on_the_front_and_are_counted(
    front: TestClient[Any, Any], raw_upstream: RawUpstream
) -> None:
    reader, writer = await connect(front)
    for _ in range(5):
        writer.write(request("GET", "/json"))
        reply = await read_reply(reader)
        assert reply.body == b'{"a": true}'
    assert served_by(front, writer) == "Front"
    writer.close()
    async with front.get("/_atk/metrics") as r:
        text = await r.text()
    counts = {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "atkproxy_requests_total"
    }
    assert counts[(("mode", "sync"), ("status", "200"))] >= 5


async def test_an_upstream_that_is_gone_gets_a_json_502(make_proxy: ProxyFactory) -> None:
    upstream = RawUpstream()
    url = await upstream.start()
    assert upstream.server is not None
    upstream.server.close()
    await upstream.server.wait_closed()
    client = await make_proxy(url, automatiko=False)
    reader, writer = await connect(client)
    with capture_logs() as logs:
        writer.write(request("GET", "/json?q=secret"))
        reply = await read_reply(reader)
    assert reply.status_line == b"HTTP/1.1 502 Bad Gateway"
    assert reply.header(b"content-type") == b"application/json; charset=utf-8"
    assert reply.header(b"date") is not None and reply.header(b"connection") is None
    assert reply.header(b"server") is not None
    error = json.loads(reply.body)
    assert error["status"] == 502 and error["error"].startswith("upstream not reached: ")
    warned = [e for e in logs if e["event"] == "upstream error"]
    assert warned == [
        {"event": "upstream error", "log_level": "warning", "status": 502,
         "reason": error["error"], "method": "GET", "path": "/json"}
    ]  # fmt: skip
    writer.write(request("GET", "/json", "Connection: close\r\n"))  # the connection was kept
    reply = await read_reply(reader)
    assert (reply.status_line, reply.header(b"connection")) == (b"HTTP/1.1 502 Bad Gateway",
                                                                b"close")  # fmt: skip
    assert await reader.read() == b""
    writer.close()


async def test_a_streamed_answer_goes_out_as_it_comes(make_proxy: ProxyFactory) -> None:
    """An answer without a length, still coming: chunked to the client, each part as it comes."""
    more = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst,")
        await more.wait()
        writer.write(b"second")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await make_proxy(f"http://127.0.0.1:{port}", automatiko=False)
    reader, writer = await connect(client)
    writer.write(request("GET", "/stream"))
    head = await reader.readuntil(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head
    assert await reader.readuntil(b"first,\r\n") == b"6\r\nfirst,\r\n"
    more.set()
    assert await reader.readuntil(b"0\r\n\r\n") == b"6\r\nsecond\r\n0\r\n\r\n"
    assert served_by(client, writer) == "Front"
    writer.close()
    server.close()


async def test_an_idle_connection_closes_after_the_keepalive_timeout(
    raw_upstream: RawUpstream, make_proxy: ProxyFactory
) -> None:
    config = {"listen": {"keepalive_timeout": "0.3s", "header_timeout": "0.2s"}}
    client = await make_proxy(await raw_upstream.start(), config, automatiko=False)
    reader, writer = await connect(client)  # sends nothing: closed at the header timeout
    with capture_logs() as logs:
        async with asyncio.timeout(5):
            assert await reader.read() == b""
    assert [e["event"] for e in logs] == [
        "connection closed: no complete request header within listen.header_timeout"
    ]
    reader, writer = await connect(client)
    writer.write(request("GET", "/json"))
    assert (await read_reply(reader)).body == b'{"a": true}'
    loop = asyncio.get_running_loop()
    answered = loop.time()
    with capture_logs() as logs:
        async with asyncio.timeout(5):
            assert await reader.read() == b""
    assert loop.time() - answered >= 0.25  # not before the keep-alive timeout (less timer slack)
    assert logs == []  # an idle keep-alive connection closes without a word


async def test_a_request_in_service_is_in_flight(
    front: TestClient[Any, Any], raw_upstream: RawUpstream
) -> None:
    in_flight: InFlight = front.server.runner._in_flight  # type: ignore[union-attr]
    reader, writer = await connect(front)
    writer.write(request("GET", "/hold"))
    await until(lambda: in_flight.count == 1)
    assert not in_flight.idle.is_set()
    raw_upstream.release.set()
    assert (await read_reply(reader)).body == b'{"a": true}'
    assert in_flight.count == 0 and in_flight.idle.is_set()
    assert isinstance(front_of(front, writer), Front)
    writer.close()


async def test_what_comes_while_a_request_is_answered_waits_its_turn(
    front: TestClient[Any, Any], raw_upstream: RawUpstream
) -> None:
    """A client that sends on before its answer: the bytes wait (reading pauses past 64 KiB),
    then are read in turn, and reading resumes for what follows."""
    in_flight: InFlight = front.server.runner._in_flight  # type: ignore[union-attr]
    reader, writer = await connect(front)
    writer.write(request("GET", "/hold"))
    await until(lambda: in_flight.count == 1)
    writer.write(request("GET", "/untyped"))  # whole, but read only after the first answer
    await until(lambda: len(raw_upstream.seen) == 1)
    raw_upstream.release.set()
    assert (await read_reply(reader)).body == b'{"a": true}'
    assert (await read_reply(reader)).body == b"abc"
    assert served_by(front, writer) == "Front"  # the waiting request was plain: served here

    raw_upstream.release.clear()
    writer.write(request("GET", "/hold"))
    await until(lambda: in_flight.count == 1)
    conn = front_of(front, writer)
    assert isinstance(conn, Front) and conn._transport is not None
    body = b"x" * 65_500  # a plain body (at most 64 KiB); with its head, over 64 KiB
    writer.write(request("POST", "/reason", "", body))
    await until(lambda: not conn._transport.is_reading())  # reading paused meanwhile
    raw_upstream.release.set()
    assert (await read_reply(reader)).body == b'{"a": true}'
    assert (await read_reply(reader)).status_line == b"HTTP/1.1 201 Made It"
    assert raw_upstream.seen[-1][3] == body
    writer.write(request("GET", "/untyped"))  # reading resumed
    assert (await read_reply(reader)).body == b"abc"
    assert served_by(front, writer) == "Front"
    writer.close()


def front_of(client: TestClient[Any, Any], writer: asyncio.StreamWriter) -> object:
    local = writer.get_extra_info("sockname")
    for conn in client.server.runner.server.connections:  # type: ignore[union-attr]
        transport = getattr(conn, "transport", None) or getattr(conn, "_transport", None)
        if transport is not None and transport.get_extra_info("peername") == local:
            return conn
    return None


async def test_a_client_that_reads_slowly_holds_the_upstream_back(make_proxy: ProxyFactory) -> None:
    """Backpressure: while the client reads nothing, the upstream cannot write a large
    answer; once the client reads, all of it arrives, in order."""
    size, part, written = 64 << 20, 256 << 10, [0]
    done = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n")
        for offset in range(0, size, part):
            writer.write(bytes([offset // part % 251]) * part)
            await writer.drain()
            written[0] += part
        writer.close()
        done.set()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await make_proxy(f"http://127.0.0.1:{port}", automatiko=False)
    reader, writer = await connect(client)
    writer.write(request("GET", "/large"))
    await reader.readuntil(b"\r\n\r\n")
    with pytest.raises(TimeoutError):  # buffers on the way hold far less than 64 MiB
        async with asyncio.timeout(1.0):
            await done.wait()
    assert written[0] < size
    got = await read_chunked(reader)
    assert (
        len(got) == size and got[:part] == bytes([0]) * part and got[-1] == (size // part - 1) % 251
    )
    writer.close()
    server.close()


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while (line := await reader.readuntil(b"\r\n")) != b"0\r\n":
        body += await reader.readexactly(int(line, 16))
        await reader.readexactly(2)
    return bytes(body)


async def test_the_shutdown_closes_idle_connections_and_lets_a_busy_one_finish(
    front: TestClient[Any, Any], raw_upstream: RawUpstream
) -> None:
    idle_reader, idle_writer = await connect(front)
    idle_writer.write(request("GET", "/json"))
    assert (await read_reply(idle_reader)).body == b'{"a": true}'
    idle_front = front_of(front, idle_writer)
    assert isinstance(idle_front, Front)
    busy_reader, busy_writer = await connect(front)
    busy_writer.write(request("GET", "/hold"))
    in_flight: InFlight = front.server.runner._in_flight  # type: ignore[union-attr]
    await until(lambda: in_flight.count == 1)
    runner = front.server.runner
    assert runner is not None and runner.server is not None
    runner.server.pre_shutdown()  # what the runner's cleanup does first
    async with asyncio.timeout(5):
        assert await idle_reader.read() == b""  # closed at once
    await until(lambda: idle_front._worker is not None and idle_front._worker.done())
    stopping = asyncio.create_task(runner.server.shutdown(5.0))
    raw_upstream.release.set()
    reply = await read_reply(busy_reader)  # answered, with no promise of more
    assert (reply.body, reply.header(b"connection")) == (b'{"a": true}', b"close")
    async with asyncio.timeout(5):
        assert await busy_reader.read() == b""
        await stopping


async def test_each_request_on_the_front_has_its_access_line(
    raw_upstream: RawUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    access = logging.getLogger(ACCESS)
    monkeypatch.setattr(access, "level", logging.INFO)
    app = create_app(proxy_settings(await raw_upstream.start(), automatiko=False))
    runner = ProxyRunner(app, access_log=access, access_log_class=AccessLogger)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        with capture_logs() as logs:
            for target in ("/json?token=secret", "/chunked", "/large"):
                writer.write(request("GET", target))
                await read_reply(reader)
        writer.close()
    finally:
        await runner.cleanup()
    lines = [{k: v for k, v in e.items() if k != "duration"} for e in logs]
    line = {"event": "request", "log_level": "info", "method": "GET", "status": 200,
            "mode": "sync", "job": None}  # fmt: skip
    assert lines == [
        {**line, "path": "/json", "bytes": 11},
        {**line, "path": "/chunked", "bytes": 5},
        {**line, "path": "/large", "bytes": len(LARGE)},
    ]
    assert all(0 < e["duration"] < 5 for e in logs)


async def test_an_answer_cut_short_by_the_upstream_cuts_the_client_line(
    make_proxy: ProxyFactory,
) -> None:
    """Past the head, a failure cannot be answered: the client sees the connection end
    before the promised body, and one warning says why."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await make_proxy(f"http://127.0.0.1:{port}", automatiko=False)
    reader, writer = await connect(client)
    with capture_logs() as logs:
        writer.write(request("GET", "/cut"))
        head = await reader.readuntil(b"\r\n\r\n")
        async with asyncio.timeout(5):
            rest = await reader.read()  # to the end of the connection
    assert b"Content-Length: 100000" in head and rest == b"x" * 10
    assert [(e["event"], e["path"]) for e in logs] == [("upstream failed mid-answer", "/cut")]
    server.close()


async def test_a_client_gone_before_the_upstream_failed_is_an_info_line(
    make_proxy: ProxyFactory,
) -> None:
    release, asked = asyncio.Event(), asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await release.wait()
        writer.close()  # no answer at all

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await make_proxy(f"http://127.0.0.1:{port}", automatiko=False)
    in_flight: InFlight = client.server.runner._in_flight  # type: ignore[union-attr]
    _, writer = await connect(client)
    with capture_logs() as logs:
        writer.write(request("POST", "/gone", "", b"{}"))
        async with asyncio.timeout(5):
            await asked.wait()
        writer.close()
        await until(lambda: served_by(client, writer) == "gone")
        release.set()
        await until(lambda: in_flight.count == 0)
    assert [(e["event"], e["method"], e["path"]) for e in logs] == [
        ("client went away", "POST", "/gone")
    ]
    server.close()


async def test_the_shutdown_cuts_a_request_that_outlives_its_timeout(
    make_proxy: ProxyFactory,
) -> None:
    held = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        held.set()
        await asyncio.Event().wait()  # never answers

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = await make_proxy(f"http://127.0.0.1:{port}", automatiko=False)
    reader, writer = await connect(client)
    writer.write(request("GET", "/held"))
    async with asyncio.timeout(5):
        await held.wait()
    runner = client.server.runner
    assert runner is not None and runner.server is not None
    async with asyncio.timeout(5):
        await runner.server.shutdown(0.2)
        assert await reader.read() == b""  # cut, with no answer
    server.close()
