"""Hostile input through the real proxy: bad JSON, sizes, targets, slow and idle clients."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from atkproxy.app import create_app
from atkproxy.connections import GuardedApplication
from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, ServerFactory, proxy_settings, start_app
from .support import ASYNC, Echo, stored, wait_job

DEEP = b"[" * 1000 + b"]" * 1000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (DEEP, "nested deeper than 64 levels"),
        (b'{"name": NaN}', "NaN is not a JSON value"),
        (b'{"name": Infinity}', "Infinity is not a JSON value"),
        (b'{"n": 1e999999}', "out of range"),
        (b'{"n": ' + b"1" * 5000 + b"}", "digits"),
    ],
)
async def test_non_strict_json_is_a_400_and_nothing_is_recorded(
    upstream: str, echo: Echo, make_proxy: ProxyFactory, body: bytes, reason: str
) -> None:
    store = MemoryStore()
    proxy = await make_proxy(upstream, store=store)  # /registrations is a start: JSON needed
    headers = {**ASYNC, "Content-Type": "application/json"}
    async with proxy.post("/registrations", data=body, headers=headers) as r:
        assert (r.status, r.content_type) == (400, "application/json")
        assert reason in (await r.json())["error"]
    assert await stored(store) == 0 and echo.seen == []


async def test_a_deep_upstream_answer_ends_the_job(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    async def deep(request: web.Request) -> web.Response:
        return web.Response(body=DEEP, content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deep)
    proxy = await make_proxy(await start_app(aiohttp_server, app))  # its rules read the body
    async with proxy.post("/registrations", json={"name": "x"}, headers=ASYNC) as r:
        assert r.status == 202
        location = r.headers["Location"]
    view = await wait_job(proxy, location)
    # not a document the pointer rule can read: the next rule (the probe, answered 200) decides
    assert (view["state"], view["status"]) == ("finished", "Active")


# -- the HTTP layer, over raw sockets to a real server ---------------------------------------


async def proxy_server(
    aiohttp_server: ServerFactory, upstream: str, config: dict[str, Any]
) -> tuple[str, int]:
    server = await aiohttp_server(create_app(proxy_settings(upstream, config)))
    assert server.port is not None
    return "127.0.0.1", server.port


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """Everything the server sent until it closed the connection; fails if it stays open."""
    async with asyncio.timeout(seconds):
        return await reader.read()


def request(method: str, target: str, *headers: str, body: bytes = b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: proxy", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def test_a_slow_header_is_closed_on_time(
    aiohttp_server: ServerFactory, upstream: str
) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {"listen": {"header_timeout": 0.5}})
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /registrations HTTP/1.1\r\nHost: proxy\r\n")
    started = time.monotonic()

    async def trickle() -> None:  # a header line that never ends, one byte at a time
        with contextlib.suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"X")
                await asyncio.sleep(0.05)

    dribbler = asyncio.create_task(trickle())
    assert await closed_within(reader, 3) == b""
    assert 0.4 < time.monotonic() - started < 2
    dribbler.cancel()
    writer.close()


async def test_a_silent_connection_is_closed_on_time(
    aiohttp_server: ServerFactory, upstream: str
) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {"listen": {"header_timeout": 0.3}})
    reader, writer = await asyncio.open_connection(host, port)
    assert await closed_within(reader, 3) == b""
    writer.close()


async def test_a_keep_alive_connection_idles_for_keepalive_timeout_not_header_timeout(
    aiohttp_server: ServerFactory, upstream: str
) -> None:
    config = {"listen": {"header_timeout": 0.2, "keepalive_timeout": 1.0}}
    host, port = await proxy_server(aiohttp_server, upstream, config)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request("GET", "/_atk/health"))
    await reader.readuntil(b"\r\n\r\n")
    answered = time.monotonic()
    rest = await closed_within(reader, 5)
    assert b'"ok"' in rest  # the body of the health answer, then the close
    assert 0.8 < time.monotonic() - answered < 3
    writer.close()


async def test_a_slow_body_times_out_and_gives_its_queue_place_back(
    aiohttp_server: ServerFactory, upstream: str, echo: Echo
) -> None:
    config = {"listen": {"body_timeout": 0.5}, "async": {"max_queue": 1, "max_inflight": 1}}
    host, port = await proxy_server(aiohttp_server, upstream, config)
    reader, writer = await asyncio.open_connection(host, port)
    head = request("POST", "/registrations", "X-ATK-Mode: async",
                   "Content-Type: application/json", "Content-Length: 100")  # fmt: skip
    writer.write(head + b"{")  # 1 of 100 bytes
    async with aiohttp.ClientSession() as client:
        url = f"http://{host}:{port}/registrations"
        # while the slow body holds the only place, others are shed
        async with client.post(url, json={}, headers=ASYNC) as r:
            assert r.status == 503
        answer = await reader.readuntil(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 408 ")
        async with client.post(url, json={"n": 1}, headers=ASYNC) as r:
            assert r.status == 202
    writer.close()


async def test_connections_beyond_the_bound_are_refused(
    aiohttp_server: ServerFactory, upstream: str
) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {"listen": {"max_connections": 3}})
    idle = [await asyncio.open_connection(host, port) for _ in range(3)]
    reader, writer = await asyncio.open_connection(host, port)
    answer = await closed_within(reader, 3)
    assert answer.startswith(b"HTTP/1.1 503 ") and b'"status": 503' in answer
    writer.close()
    idle[0][1].close()
    await idle[0][1].wait_closed()
    async with aiohttp.ClientSession() as client:  # a place is free again
        end = time.monotonic() + 3
        while True:
            async with client.get(f"http://{host}:{port}/_atk/health") as r:
                if r.status == 200:
                    break
            assert time.monotonic() < end
            await asyncio.sleep(0.05)
    for _, w in idle[1:]:
        w.close()


# -- what async requests may carry -------------------------------------------------------------


async def test_async_headers_beyond_max_headers_are_431(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    store = MemoryStore()
    proxy = await make_proxy(upstream, {"async": {"max_headers": "4KiB"}}, store=store)
    big = {f"X-Pad-{n}": "v" * 1000 for n in range(5)}
    async with proxy.post("/registrations", json={}, headers={**ASYNC, **big}) as r:
        assert r.status == 431
        assert "async.max_headers" in (await r.json())["error"]
    async with proxy.post("/registrations", json={}, headers=big) as r:
        assert r.status == 200  # a synchronous call is the backend's business
    assert await stored(store) == 0 and len(echo.seen) == 1


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_an_absolute_form_target_is_a_400(
    aiohttp_server: ServerFactory, upstream: str, echo: Echo, method: str
) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {})
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request(method, f"http://{host}:{port}/registrations", "X-ATK-Mode: async",
                         "Content-Type: application/json", body=b"{}"))  # fmt: skip
    answer = await reader.readuntil(b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    writer.close()
    assert echo.seen == []


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/registrations%2Fabc%2Fsig", "encoded slash"),
        ("/registrations/abc%2fsig", "encoded slash"),
        ("/registrations/a%5Cb", "encoded slash"),
        ("/%2e%2e/admin", "'.' or '..'"),
        ("/registrations/../admin", "'.' or '..'"),
        ("/registrations/./x", "'.' or '..'"),
        ("/registrations?businessKey=a&businessKey=b", "'businessKey' is given more than once"),
    ],
)
async def test_ambiguous_async_targets_are_400(
    aiohttp_server: ServerFactory, upstream: str, echo: Echo, target: str, reason: str
) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {})
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request("POST", target, "X-ATK-Mode: async", "Connection: close",
                         "Content-Type: application/json", body=b"{}"))  # fmt: skip
    answer = await closed_within(reader, 3)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert reason in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    writer.close()
    assert echo.seen == []


async def test_a_malformed_request_is_answered_in_json_echoing_nothing(
    aiohttp_server: ServerFactory, upstream: str
) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {})
    reader, writer = await asyncio.open_connection(host, port)
    with structlog.testing.capture_logs() as logs:
        writer.write(b"GET / HTTP/1.1\r\nHost: proxy\r\nAuthorization: Basic s3cr3t\x01x\r\n\r\n")
        answer = await closed_within(reader, 3)
    writer.close()
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 400 ") and b"application/json" in head
    assert json.loads(body) == {"error": "bad request", "status": 400}
    assert b"s3cr3t" not in answer and "s3cr3t" not in repr(logs)
    assert [line["event"] for line in logs] == ["malformed request"]


async def test_a_failing_handler_answers_json_without_a_trace(
    aiohttp_server: ServerFactory,
) -> None:
    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("internal detail")

    app = GuardedApplication()
    app.router.add_get("/", broken)
    server = await aiohttp_server(app)
    with structlog.testing.capture_logs() as logs:
        async with aiohttp.ClientSession() as client, client.get(server.make_url("/")) as r:
            assert (r.status, await r.json()) == (
                500,
                {"error": "internal server error", "status": 500},
            )
    [line] = logs
    assert (line["event"], line["error"], line["log_level"]) == (
        "request failed",
        "RuntimeError",
        "error",
    )


async def test_not_http_at_all_is_a_quiet_400(aiohttp_server: ServerFactory, upstream: str) -> None:
    host, port = await proxy_server(aiohttp_server, upstream, {})
    reader, writer = await asyncio.open_connection(host, port)
    with structlog.testing.capture_logs() as logs:
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 HTTP/1.1\r\n\r\n")  # TLS hello
        answer = await closed_within(reader, 3)
    writer.close()
    assert b" 400 " in answer.split(b"\r\n", 1)[0]
    assert [(line["event"], line["log_level"]) for line in logs] == [("malformed request", "debug")]
