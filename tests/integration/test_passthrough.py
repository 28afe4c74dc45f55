"""Requests without the async header reach the upstream intact, and come back intact."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from atkproxy.app import create_app
from atkproxy.demo.run import serve

from .conftest import ProxyFactory, ServerFactory, proxy_settings, start_app
from .support import Echo, header_names, pattern


@pytest.fixture
async def proxy(
    echo: Echo, aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> TestClient[Any, Any]:
    return await make_proxy(await start_app(aiohttp_server, echo.app), automatiko=False)


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_method_path_and_query_are_kept(proxy: TestClient[Any, Any], method: str) -> None:
    path_qs = "/a%2Fb/c%20d?x=1&x=2&y=%20&empty="
    async with proxy.request(method, path_qs) as r:
        assert r.status == 200
        assert r.headers["X-Upstream"] == "echo"
        seen = await r.json()
    assert (seen["method"], seen["path_qs"]) == (method, path_qs)


async def test_headers_repeated_kept_hop_by_hop_dropped_forwarded_added(
    proxy: TestClient[Any, Any], echo: Echo
) -> None:
    headers = [
        ("X-Multi", "one"),
        ("X-Multi", "two"),
        ("Connection", "keep-alive, X-Private"),
        ("X-Private", "secret"),
        ("Keep-Alive", "timeout=5"),
        ("X-Forwarded-For", "10.9.8.7"),
        ("X-ATK-Mode", "sync"),
        ("X-ATK-Callback", "http://example.invalid/cb"),
    ]
    async with proxy.get("/h", headers=headers) as r:
        assert r.status == 200
    seen = echo.seen[-1]
    assert [v for k, v in seen["headers"] if k == "X-Multi"] == ["one", "two"]
    assert not {"x-private", "keep-alive", "x-atk-mode", "x-atk-callback"} & header_names(seen)
    forwarded = dict((k.lower(), v) for k, v in seen["headers"])
    assert forwarded["x-forwarded-for"] == "127.0.0.1"  # an untrusted peer's chain: replaced
    assert forwarded["x-forwarded-proto"] == "http"
    assert forwarded["x-forwarded-host"].startswith("127.0.0.1:")


async def test_async_header_on_get_is_served_synchronously(
    proxy: TestClient[Any, Any], echo: Echo
) -> None:
    async with proxy.get("/thing", headers={"X-ATK-Mode": "async"}) as r:
        assert r.status == 200
        assert "X-ATK-Job" not in r.headers
    assert "x-atk-mode" not in header_names(echo.seen[-1])


async def test_binary_body_round_trip(proxy: TestClient[Any, Any]) -> None:
    body = bytes(range(256)) * 4
    headers = {"Content-Type": "application/octet-stream"}
    async with proxy.post("/bin", data=body, headers=headers) as r:
        seen = await r.json()
    assert seen["body"].encode("latin-1") == body


@pytest.mark.parametrize("code", [201, 204, 301, 404, 418, 500, 503])
async def test_status_codes_pass_unchanged(proxy: TestClient[Any, Any], code: int) -> None:
    async with proxy.get(f"/status/{code}", allow_redirects=False) as r:
        assert r.status == code
        assert await r.read() == (b"" if code == 204 else f'{{"code": {code}}}'.encode())


async def test_repeated_response_headers(proxy: TestClient[Any, Any]) -> None:
    async with proxy.get("/cookies") as r:
        assert r.headers.getall("Set-Cookie") == ["a=1", "b=2"]


async def test_large_bodies_stream_both_ways(proxy: TestClient[Any, Any]) -> None:
    size = 24 * 1024 * 1024

    async def upload() -> AsyncIterator[bytes]:
        for offset in range(0, size, 1 << 20):
            yield pattern(offset, 1 << 20)

    async with proxy.post("/sha256", data=upload()) as r:
        answer = await r.json()
    expected = hashlib.sha256(b"".join(pattern(o, 1 << 20) for o in range(0, size, 1 << 20)))
    assert answer == {"sha256": expected.hexdigest(), "chunked": True}

    digest, received = hashlib.sha256(), 0
    async with proxy.get(f"/bytes/{size}") as r:
        assert r.headers.get("Transfer-Encoding") == "chunked"
        async for chunk in r.content.iter_chunked(1 << 16):
            digest.update(chunk)
            received += len(chunk)
    assert received == size
    assert digest.hexdigest() == expected.hexdigest()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_unreachable_upstream_is_502(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(f"http://127.0.0.1:{closed_port()}", automatiko=False)
    async with proxy.get("/anything") as r:
        assert r.status == 502
        body = await r.json()
    assert body["status"] == 502
    assert body["error"].startswith("upstream not reached")


async def test_slow_upstream_is_504(
    echo: Echo, aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    upstream = await start_app(aiohttp_server, echo.app)
    proxy = await make_proxy(upstream, {"upstream": {"timeout": "200ms"}}, automatiko=False)
    async with proxy.get("/hold/slow") as r:
        assert r.status == 504
        assert await r.json() == {"error": "upstream did not answer in time", "status": 504}
    echo.release.set()


async def test_head_keeps_the_upstream_length_and_sends_no_body(
    proxy: TestClient[Any, Any], echo: Echo
) -> None:
    async with proxy.head("/thing") as r:
        assert r.status == 200
        assert int(r.headers["Content-Length"]) > 0
        assert await r.read() == b""
    assert echo.seen[-1]["method"] == "HEAD"


async def logged(logs: list[dict[str, Any]], event: str, deadline: float = 5.0) -> dict[str, Any]:
    end = asyncio.get_running_loop().time() + deadline
    while not (found := [line for line in logs if line["event"] == event]):
        assert asyncio.get_running_loop().time() < end, f"no {event!r} in {logs}"
        await asyncio.sleep(0.01)
    assert len(found) == 1
    return found[0]


async def test_upstream_dropping_mid_answer_cuts_the_client_and_logs_once(
    proxy: TestClient[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with proxy.get("/broken") as r:
            assert r.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        line = await logged(logs, "upstream failed mid-answer")
    assert line["path"] == "/broken"
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_client_leaving_mid_download_is_not_an_error(
    echo: Echo, aiohttp_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # served as `atkproxy serve` serves it: aiohttp's test server cancels handlers when the
    # client leaves, the real one lets them run on and see the closed connection
    upstream = await start_app(aiohttp_server, echo.app)
    runner, url = await serve(create_app(proxy_settings(upstream, automatiko=False)))
    try:
        with structlog.testing.capture_logs() as logs:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{url}/bytes/{256 << 20}") as r,
            ):
                await r.content.readexactly(65536)
                r.close()
            await logged(logs, "client went away")
    finally:
        await runner.cleanup()
    assert not [line for line in logs if line["log_level"] in ("warning", "error")]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_any_path_passes_even_with_an_encoded_newline(proxy: TestClient[Any, Any]) -> None:
    async with proxy.get("/a%0Ab%0D%20c") as r:
        assert r.status == 200
        assert (await r.json())["path_qs"] == "/a%0Ab%0D%20c"


async def test_a_slow_small_body_is_408_and_never_reaches_the_upstream(
    echo: Echo, upstream: str, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, {"listen": {"body_timeout": "300ms"}}, automatiko=False)
    assert proxy.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    writer.write(b"POST /x HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
    async with asyncio.timeout(10):  # the 408 comes without the rest of the body
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower()
    assert json.loads(body)["error"] == "request body not received within listen.body_timeout"
    assert echo.seen == []


async def test_pass_through_hands_its_upstream_connection_back_for_the_next_request(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    """One pooled connection serves request after request (none is kept by the one before)."""

    async def peer_port(request: web.Request) -> web.Response:
        return web.json_response(request.transport.get_extra_info("peername")[1])

    app = web.Application()
    app.router.add_get("/port", peer_port)
    upstream = await start_app(aiohttp_server, app)
    config = {"upstream": {"max_connections": 1, "timeout": 2}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    ports = []
    for _ in range(5):
        async with proxy.get("/port") as r:
            assert r.status == 200
            ports.append(await r.json())
    assert len(set(ports)) == 1
