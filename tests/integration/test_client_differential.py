"""The httptools client (http1.py) answers as aiohttp's client does (aioclient.py): the same
requests through both, against real servers on 127.0.0.1 (an aiohttp test upstream, the example
backend, nginx, and a raw asyncio server for what those never do), give the same answers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atkproxy.aioclient import AiohttpUpstream
from atkproxy.demo.backend import create_backend
from atkproxy.headers import Pairs, response_headers
from atkproxy.http1 import Http1Upstream, request_head
from atkproxy.jobs import Headers, UpstreamRequest
from atkproxy.upstream import Body, UpstreamError, UpstreamTimeout

from .conftest import ServerFactory, start_app
from .support import EXTENSION_HEADER_NAMES, HEADER_VALUES, pattern

Client = Http1Upstream | AiohttpUpstream
Outcome = tuple[int, Headers, bytes] | str
BodyMaker = Callable[[], Body]
# headers that differ between two answers of the same server for reasons of time alone
LOCALHOST = ipaddress.ip_address("127.0.0.1")
VOLATILE = {"date", "last-modified", "etag", "expires"}


def clients(
    url: str, timeout: float = 5.0, size: int = 10
) -> tuple[Http1Upstream, AiohttpUpstream]:
    return Http1Upstream(url, timeout, 2.0, size), AiohttpUpstream(url, timeout, 2.0, size)


async def outcome(client: Client, method: str, path: str, headers: Pairs, body: Body) -> Outcome:
    """Status, hop-filtered headers (time-dependent ones left out) and body; or the error."""
    try:
        async with client.stream(method, path, headers, body) as answer:
            data = b"".join([chunk async for chunk in answer.chunks()])
            kept = [
                (k.lower(), v)
                for k, v in response_headers(answer.headers.items())
                if k.lower() not in VOLATILE
            ]
            return answer.status, sorted(kept), data
    except UpstreamError as exc:
        return f"{type(exc).__name__}: {exc.status}"


async def both(
    pair: tuple[Http1Upstream, AiohttpUpstream],
    method: str,
    path: str,
    headers: Pairs = (),
    body: BodyMaker = lambda: None,
) -> Outcome:
    ours = await outcome(pair[0], method, path, list(headers), body())
    theirs = await outcome(pair[1], method, path, list(headers), body())
    assert ours == theirs, f"{method} {path}"
    return ours


def stream_of(data: bytes, piece: int = 7000) -> BodyMaker:
    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(data), piece):
            yield data[offset : offset + piece]

    return chunks


# pytest-asyncio's replacement (a loop-factories hook) would parametrize every test in the
# directory; this module alone runs on both loops
pytestmark = pytest.mark.filterwarnings('ignore:Overriding the "event_loop_policy" fixture')


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    """Every test twice: on asyncio's own loop and on uvloop, which `atkproxy serve` runs."""
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture
async def pair_of() -> AsyncIterator[Callable[..., tuple[Http1Upstream, AiohttpUpstream]]]:
    made: list[Client] = []

    def make(url: str, **kwargs: Any) -> tuple[Http1Upstream, AiohttpUpstream]:
        pair = clients(url, **kwargs)
        made.extend(pair)
        return pair

    yield make
    for client in made:
        await client.close()


PairOf = Callable[..., tuple[Http1Upstream, AiohttpUpstream]]

# -- the aiohttp test upstream -------------------------------------------------------------


class Upstream:
    """What the upstream saw, and answers of every framing aiohttp's server produces."""

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=64 << 20)
        self.app.router.add_route("*", "/seen", self.seen)
        self.app.router.add_route("*", "/status/{code}", self.status)
        self.app.router.add_get("/chunked/{size}", self.chunked)
        self.app.router.add_get("/slow", self.slow)
        self.app.router.add_get("/close", self.close)
        self.app.router.add_get("/cookies", self.cookies)

    async def seen(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = sorted((k.lower(), v) for k, v in request.headers.items())
        return web.json_response(
            {
                "method": request.method,
                "path_qs": request.raw_path,
                "headers": headers,
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
            }
        )

    async def status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        body = None if code in (204, 304) else f"status {code}".encode()
        return web.Response(status=code, body=body, headers={"X-Code": str(code)})

    async def chunked(self, request: web.Request) -> web.StreamResponse:
        size = int(request.match_info["size"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        for offset in range(0, size, 50_000):
            await response.write(pattern(offset, min(50_000, size - offset)))
        await response.write_eof()
        return response

    async def slow(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for n in range(5):
            await asyncio.sleep(0.02)  # a slow producer is what this route is for
            await response.write(f"part {n}\n".encode())
        await response.write_eof()
        return response

    async def close(self, request: web.Request) -> web.Response:
        return web.Response(text="bye", headers={"Connection": "close"})

    async def cookies(self, request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response


@pytest.fixture
async def upstream_url(aiohttp_server: ServerFactory) -> str:
    return await start_app(aiohttp_server, Upstream().app)


BODY = pattern(0, 100_000)
CASES: list[tuple[str, str, Headers, BodyMaker]] = [
    ("GET", "/seen?a=1&a=2&b=%20", [("Accept", "*/*"), ("X-Multi", "1"), ("X-Multi", "2")],
     lambda: None),
    ("HEAD", "/seen", [], lambda: None),
    ("OPTIONS", "/seen", [], lambda: None),
    ("DELETE", "/seen", [], lambda: None),
    ("POST", "/seen", [], lambda: None),
    ("POST", "/seen", [("Content-Type", "application/json")], lambda: b'{"a": 1}'),
    ("PUT", "/seen", [], lambda: BODY),
    ("PATCH", "/seen", [], stream_of(BODY)),
    ("POST", "/seen", [("Content-Length", str(len(BODY)))], stream_of(BODY)),
    ("POST", "/seen", [], stream_of(b"")),
    ("GET", "/status/204", [], lambda: None),
    ("GET", "/status/304", [], lambda: None),
    ("GET", "/status/404", [], lambda: None),
    ("GET", "/status/500", [], lambda: None),
    ("HEAD", "/status/200", [], lambda: None),
    ("GET", "/chunked/3000000", [], lambda: None),
    ("GET", "/slow", [], lambda: None),
    ("GET", "/close", [], lambda: None),
    ("GET", "/cookies", [], lambda: None),
    ("GET", "/missing", [], lambda: None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "headers", "body"), [pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in CASES]
)
async def test_aiohttp_upstream(
    upstream_url: str,
    pair_of: PairOf,
    method: str,
    path: str,
    headers: Headers,
    body: BodyMaker,
) -> None:
    pair = pair_of(upstream_url)
    for _ in range(2):  # the second time over a pooled connection
        await both(pair, method, path, headers, body)


async def test_every_case_in_turn_on_one_connection(upstream_url: str, pair_of: PairOf) -> None:
    pair = pair_of(upstream_url, size=1)
    for case in CASES:
        await both(pair, *case)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    headers=st.lists(
        st.tuples(
            EXTENSION_HEADER_NAMES,
            HEADER_VALUES,
        ),
        max_size=12,
        # aiohttp's client keeps one of two names that differ in case only (see below)
        unique_by=lambda pair: pair[0].lower(),
    ),
    size=st.one_of(st.integers(0, 70_000), st.sampled_from([65_535, 65_536, 65_537, 1 << 20])),
    streamed=st.booleans(),
    method=st.sampled_from(["POST", "PUT", "PATCH", "DELETE"]),
)
async def test_any_headers_and_body_size(
    upstream_url: str,
    pair_of: PairOf,
    headers: Headers,
    size: int,
    streamed: bool,
    method: str,
) -> None:
    data = pattern(size, size)
    body = stream_of(data, 30_000) if streamed else (lambda: data)
    status, _, answer = await both(pair_of(upstream_url), method, "/seen", headers, body)
    assert status == 200
    assert f'"length": {size}' in answer.decode()


# -- the example backend -------------------------------------------------------------------


async def test_example_backend(aiohttp_server: ServerFactory, pair_of: PairOf) -> None:
    # one backend per client: the instances each creates must not meet
    ours, _ = pair_of(await start_app(aiohttp_server, create_backend()))
    _, theirs = pair_of(await start_app(aiohttp_server, create_backend()))
    json = [("Content-Type", "application/json")]
    steps: list[tuple[str, str, bytes | None]] = [
        ("POST", "/registrations?businessKey=k1", b'{"name": "Ada", "age": 36}'),
        ("GET", "/registrations/k1", None),
        ("GET", "/registrations", None),
        ("PATCH", "/registrations/k1", b'{"age": 37}'),
        ("POST", "/registrations?businessKey=k1", b"{}"),
        ("POST", "/registrations", b"not json"),
        ("DELETE", "/registrations/k1", None),
        ("GET", "/registrations/k1", None),
    ]
    for method, path, body in steps:
        assert await outcome(ours, method, path, json, body) == await outcome(
            theirs, method, path, json, body
        )


# -- nginx ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


NGINX_CONF = """
worker_processes 1;
daemon off;
{user}
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 3;
    if_modified_since before;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location = /json {{ default_type application/json; return 200 '{{"ok":true}}'; }}
        location = /empty {{ return 204; }}
        location = /close {{ keepalive_timeout 0; return 200 'bye'; }}
        location /ssi/ {{ ssi on; }}
    }}
}}
"""


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    work = tmp_path_factory.mktemp("nginx")
    (work / "www" / "ssi").mkdir(parents=True)
    (work / "www" / "big.bin").write_bytes(pattern(0, 3_000_000))
    (work / "www" / "small.txt").write_text("small\n")
    (work / "www" / "ssi" / "page.html").write_text('a<!--# echo var="uri" -->b\n' * 50)
    port = free_port()
    user = "user root;" if os.geteuid() == 0 else ""
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=work, port=port, user=user))
    process = subprocess.Popen(
        ["nginx", "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_listening(port, process, work / "error.log")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text() if log.exists() else "nginx exited"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)  # a poll with a deadline: nginx gives no readiness signal
    raise AssertionError(f"nginx not listening on {port}")


NGINX_CASES: list[tuple[str, str, Headers, BodyMaker]] = [
    ("GET", "/json", [], lambda: None),
    ("POST", "/json", [("Content-Type", "application/json")], lambda: b'{"a": 1}'),
    ("POST", "/json", [], stream_of(BODY)),
    ("GET", "/empty", [], lambda: None),
    ("GET", "/close", [], lambda: None),
    ("GET", "/small.txt", [], lambda: None),
    ("HEAD", "/small.txt", [], lambda: None),
    ("GET", "/big.bin", [], lambda: None),
    ("HEAD", "/big.bin", [], lambda: None),
    ("GET", "/big.bin", [("Range", "bytes=10-99")], lambda: None),
    ("GET", "/small.txt", [("If-Modified-Since", "Fri, 01 Jan 2100 00:00:00 GMT")], lambda: None),
    ("GET", "/ssi/page.html", [], lambda: None),
    ("POST", "/small.txt", [], lambda: b"x"),
    ("GET", "/nothing-here", [], lambda: None),
]  # fmt: skip


async def test_nginx(nginx: str, pair_of: PairOf) -> None:
    # keepalive_requests 3: nginx closes each connection after its third answer
    pair = pair_of(nginx, size=2)
    statuses = []
    for case in NGINX_CASES * 2:
        result = await both(pair, *case)
        statuses.append(result if isinstance(result, str) else result[0])
    assert {204, 206, 304, 405, 404} <= set(statuses)


# -- a raw server: what the servers above never do -----------------------------------------

# (request head, its number on its connection, the writer) -> keep the connection open
Handler = Callable[[bytes, int, asyncio.StreamWriter], Awaitable[bool]]


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":")[1]))
    return head


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[str, list[bytes]]]:
    heads: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while (head := await read_request(reader)) is not None:
            heads.append(head)
            served += 1
            if not await handler(head, served, writer) or served >= 100:
                break
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}", heads


async def until_close(head: bytes, _: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, then EOF")
    return False


async def continue_first(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
    w.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")
    return True


async def http10(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
    w.write(b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\nold!")
    return False


async def answers_once(head: bytes, n: int, w: asyncio.StreamWriter) -> bool:
    """Serves a connection's first request; hangs up on its second without a word."""
    if n > 1:
        return False
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
    return True


async def short_body(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
    return False


async def garbage(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
    w.write(b"NOT HTTP AT ALL\r\n\r\n")
    return False


@pytest.mark.parametrize(
    "handler",
    [until_close, continue_first, http10, short_body, garbage],
    ids=lambda h: h.__name__,
)
async def test_raw_framing(handler: Handler, pair_of: PairOf) -> None:
    async with raw_server(handler) as (url, _):
        pair = pair_of(url)
        for _ in range(2):
            await both(pair, "GET", "/x")


@pytest.mark.parametrize(
    ("method", "body", "expected"),
    [
        pytest.param("GET", None, (200, b"first"), id="get-retried-on-a-fresh-connection"),
        pytest.param("PUT", b"x", (200, b"first"), id="put-retried"),
        pytest.param("POST", b"x", "UpstreamUnavailable: 502", id="post-not-retried"),
    ],
)
async def test_pooled_connection_closed_under_a_request(
    method: str, body: bytes | None, expected: Any, pair_of: PairOf
) -> None:
    async with raw_server(answers_once) as (url, heads):
        ours, _ = pair_of(url, size=1)
        assert (await outcome(ours, method, "/first", [], body))[0] == 200
        result = await outcome(ours, method, "/second", [], body)
        got = result if isinstance(result, str) else (result[0], result[2])
        assert got == expected
        second = [h for h in heads if b"/second" in h]
        assert len(second) == (1 if isinstance(expected, str) else 2)


async def test_idle_connection_closed_by_the_upstream_is_not_used(pair_of: PairOf) -> None:
    async def close_after(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        return False  # closes without saying so

    async with raw_server(close_after) as (url, heads):
        ours, _ = pair_of(url, size=1)
        for _ in range(3):
            assert (await outcome(ours, "POST", "/p", [], b"x"))[0] == 200
            deadline = time.monotonic() + 5
            while ours._pool._open:  # until the client has seen the close: then it is idle
                assert time.monotonic() < deadline
                await asyncio.sleep(0.001)
        assert len(heads) == 3


# -- errors: not reached, timeouts, the pool bound -----------------------------------------


async def test_refused_is_not_reached(pair_of: PairOf) -> None:
    ours, theirs = pair_of(f"http://127.0.0.1:{free_port()}")
    request = UpstreamRequest("POST", "/x", [], b"{}")
    for client in (ours, theirs):
        result = await client.call(request, 1000)
        assert (result.status, result.not_sent) == (502, True)
        assert await client.get_status("/x", []) is None


async def test_connect_timeout_is_not_reached() -> None:
    # a listener that never accepts, its backlog full: the kernel drops further SYNs
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued = [socket.socket() for _ in range(3)]
        try:
            for sock in queued:
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect(("127.0.0.1", port))
            pair = (
                Http1Upstream(f"http://127.0.0.1:{port}", 5.0, 0.2, 2),
                AiohttpUpstream(f"http://127.0.0.1:{port}", 5.0, 0.2, 2),
            )
            try:
                assert await both(pair, "GET", "/") == "UpstreamNotReached: 502"
                result = await pair[0].call(UpstreamRequest("GET", "/", [], b""), 100)
                assert (result.error, result.not_sent) == ("upstream not reached in time", True)
            finally:
                for client in pair:
                    await client.close()
        finally:
            for sock in queued:
                sock.close()


async def test_no_free_connection_in_time_is_not_reached(upstream_url: str) -> None:
    ours = Http1Upstream(upstream_url, 5.0, 0.2, 1)
    try:
        async with ours.stream("GET", "/slow", [], None):
            result = await ours.call(UpstreamRequest("GET", "/seen", [], b""), 1000)
        assert (result.status, result.not_sent) == (502, True)
        assert result.error == "upstream not reached: no free connection in time"
    finally:
        await ours.close()


async def test_the_pool_bound_holds(upstream_url: str) -> None:
    ours = Http1Upstream(upstream_url, 5.0, 5.0, 2)
    try:
        requests = [ours.call(UpstreamRequest("GET", "/slow", [], b""), 1000) for _ in range(6)]
        results = await asyncio.gather(*requests)
        assert [r.status for r in results] == [200] * 6
        assert len(ours._pool._open) == 2
    finally:
        await ours.close()


async def test_slow_answer_times_out(upstream_url: str, pair_of: PairOf) -> None:
    pair = pair_of(upstream_url, timeout=0.01)
    assert await both(pair, "GET", "/slow") == "UpstreamTimeout: 504"
    with pytest.raises(UpstreamTimeout):
        async with pair[0].stream("GET", "/slow", [], None) as answer:
            async for _ in answer.chunks():
                pass


async def trickles(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
    """Six parts 0.1 s apart: each within a 0.25 s timeout, the whole beyond it."""
    w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n")
    for part in b"slowly":
        await asyncio.sleep(0.1)  # the upstream's pace: what the test is about
        w.write(bytes([part]))
        await w.drain()
    return True


async def test_the_timeout_bounds_each_wait_not_the_whole_answer() -> None:
    async with raw_server(trickles) as (url, _):
        ours = Http1Upstream(url, 0.25, 2.0, 1)
        try:
            result = await ours.call(UpstreamRequest("GET", "/", [], b""), 100)
            assert (result.status, result.body, result.error) == (200, b"slowly", None)
        finally:
            await ours.close()


async def test_answer_too_large_and_an_unsent_head(upstream_url: str) -> None:
    ours = Http1Upstream(upstream_url, 5.0, 5.0, 2)
    try:
        result = await ours.call(UpstreamRequest("GET", "/chunked/100000", [], b""), 1000)
        assert (result.status, result.error) == (
            502,
            "upstream answer exceeds async.max_result (1000 bytes)",
        )
        result = await ours.call(UpstreamRequest("GET", "/seen", [("X-A", "1\r\nX-B: 2")], b""), 9)
        assert (result.status, result.not_sent) == (502, False)
    finally:
        await ours.close()


async def test_repeated_names_in_any_case_all_arrive(upstream_url: str) -> None:
    # where aiohttp's client sends `x-a: 2` only (its session merges names case-sensitively)
    ours = Http1Upstream(upstream_url, 5.0, 5.0, 1)
    try:
        headers = [("X-A", "1"), ("x-a", "2"), ("X-A", "3")]
        result = await ours.call(UpstreamRequest("GET", "/seen", headers, b""), 10_000)
        seen = json.loads(result.body)["headers"]
        assert [v for k, v in seen if k == "x-a"] == ["1", "2", "3"]
    finally:
        await ours.close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that signs itself, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOCALHOST)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_https_upstream(aiohttp_server: ServerFactory, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(cert, key)
    server = await aiohttp_server(Upstream().app, ssl=served)
    url = str(server.make_url("")).rstrip("/")
    assert url.startswith("https://")
    trusting = Http1Upstream(url, 5.0, 5.0, 2, ssl.create_default_context(cafile=str(cert)))
    default = Http1Upstream(url, 5.0, 5.0, 2)
    try:
        for _ in range(2):  # the second time over the pooled TLS connection
            result = await trusting.call(UpstreamRequest("POST", "/seen", [], b"tls"), 10_000)
            assert (result.status, json.loads(result.body)["length"]) == (200, 3)
        assert len(trusting._pool._open) == 1
        refused = await default.call(UpstreamRequest("GET", "/seen", [], b""), 10_000)
        assert (refused.status, refused.not_sent) == (502, True)  # not trusted: never sent
    finally:
        await trusting.close()
        await default.close()


async def test_a_status_probe_leaves_its_connection_reusable(upstream_url: str) -> None:
    ours = Http1Upstream(upstream_url, 5.0, 5.0, 4)
    try:
        for _ in range(3):
            assert await ours.get_status("/status/404", []) == 404
        assert (len(ours._pool._open), len(ours._pool._idle)) == (1, 1)
    finally:
        await ours.close()


async def switching(head: bytes, _: int, w: asyncio.StreamWriter) -> bool:
    w.write(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n")
    return True


async def test_an_upgrade_is_no_answer(pair_of: PairOf) -> None:
    async with raw_server(switching) as (url, _):
        ours, _ = pair_of(url)
        result = await ours.call(UpstreamRequest("GET", "/", [], b""), 1000)
        assert (result.status, result.not_sent) == (502, False)
        assert result.error is not None and result.error.startswith("upstream unavailable: bad")


async def test_a_body_after_a_head_answer_is_dropped(upstream_url: str) -> None:
    # aiohttp's server sends a streamed body even to HEAD; aiohttp's client then fails (502)
    ours = Http1Upstream(upstream_url, 5.0, 5.0, 1)
    try:
        for _ in range(2):
            async with ours.stream("HEAD", "/chunked/10", [], None) as answer:
                assert (answer.status, [c async for c in answer.chunks()]) == (200, [])
            result = await ours.call(UpstreamRequest("GET", "/status/418", [], b""), 1000)
            assert (result.status, result.body) == (418, b"status 418")
    finally:
        await ours.close()


# -- request_head: the framing of what goes out (pure) -------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "body", "expected"),
    [
        pytest.param("GET", [], None, "GET /p HTTP/1.1\r\nHost: h\r\n\r\n", id="get"),
        pytest.param(
            "POST", [], None, "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            id="post-without-body",
        ),
        pytest.param(
            "PUT", [("Content-Length", "9"), ("Host", "x"), ("A", "1")], b"abc",
            "PUT /p HTTP/1.1\r\nHost: h\r\nA: 1\r\nContent-Length: 3\r\n\r\n",
            id="length-of-the-bytes",
        ),
        pytest.param(
            "POST", [("Transfer-Encoding", "chunked")], stream_of(b"")(),
            "POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            id="stream-chunked",
        ),
        pytest.param(
            "POST", [("content-length", "12")], stream_of(b"")(),
            "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
            id="stream-with-its-length",
        ),
    ],
)  # fmt: skip
def test_request_head(method: str, headers: Headers, body: Body, expected: str) -> None:
    assert request_head(method, "/p", "h", headers, body)[0] == expected.encode()


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        pytest.param("/p\r\nX: 1", [], id="target"),
        pytest.param("/p", [("A", "1\nB: 2")], id="value-lf"),
        pytest.param("/p", [("A", "1\rB: 2")], id="value-cr"),
        pytest.param("/p", [("A\r\nB", "1")], id="name"),
    ],
)
def test_request_head_refuses_line_breaks(path: str, headers: Headers) -> None:
    with pytest.raises(UpstreamError):
        request_head("GET", path, "h", headers, None)
