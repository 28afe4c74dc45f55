"""Forwarding headers trusted only from listen.trusted_proxies; header bytes never altered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from atkproxy.app import create_app

from .conftest import ProxyFactory, ServerFactory, proxy_settings, start_app
from .support import Echo

SPOOFED = {"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Host": "evil", "X-Real-IP": "1.2.3.4",
           "Forwarded": "for=1.2.3.4", "X-Forwarded-Proto": "https"}  # fmt: skip


def received(seen: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in seen["headers"]}


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_forwarding_headers_of_an_untrusted_peer_are_replaced(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, mode: str
) -> None:
    echo = Echo()
    proxy = await make_proxy(await start_app(aiohttp_server, echo.app), automatiko=False)
    async with proxy.post("/x", json={}, headers={"X-ATK-Mode": mode, **SPOOFED}) as response:
        assert response.status in (200, 202)
    headers = received(await echo.arrived.get())
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] != "evil"
    assert "x-real-ip" not in headers and "forwarded" not in headers


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_forwarding_headers_of_a_trusted_peer_are_kept_and_appended(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, mode: str
) -> None:
    echo = Echo()
    config = {"listen": {"trusted_proxies": ["127.0.0.0/8"]}}
    proxy = await make_proxy(await start_app(aiohttp_server, echo.app), config, automatiko=False)
    async with proxy.post("/x", json={}, headers={"X-ATK-Mode": mode, **SPOOFED}) as response:
        assert response.status in (200, 202)
    headers = received(await echo.arrived.get())
    assert headers["x-forwarded-for"] == "1.2.3.4, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["x-forwarded-host"] == "evil"
    assert headers["x-real-ip"] == "1.2.3.4"
    assert headers["forwarded"].startswith("for=1.2.3.4, for=127.0.0.1;proto=http;host=")


# -- header bytes: UTF-8 passes byte-exact, anything else is a 400 ---------------------------


class RawUpstream:
    """An upstream that records the header bytes it received."""

    def __init__(self) -> None:
        self.raw: list[tuple[tuple[bytes, bytes], ...]] = []
        self.arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.answer)

    async def answer(self, request: web.Request) -> web.Response:
        self.raw.append(request.raw_headers)
        self.arrived.set()
        return web.json_response({})


async def send(port: int, head: bytes, body: bytes = b"{}") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"Content-Type: application/json\r\nConnection: close\r\n")
    writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    answer = await reader.read()
    writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("mode", [b"sync", b"async"])
@pytest.mark.parametrize(
    "value", ["café ☕ 日本".encode(), b"\xff\xfe\xc3("], ids=["utf8", "not-utf8"]
)
async def test_header_bytes_reach_the_upstream_byte_exact(
    aiohttp_server: ServerFactory, mode: bytes, value: bytes
) -> None:
    upstream = RawUpstream()
    url = await start_app(aiohttp_server, upstream.app)
    server = await aiohttp_server(create_app(proxy_settings(url, automatiko=False)))
    head = b"POST /x HTTP/1.1\r\nHost: p\r\nX-ATK-Mode: " + mode + b"\r\nX-Name: " + value + b"\r\n"
    status, _ = await send(server.port, head)
    assert status in (200, 202)
    async with asyncio.timeout(10):  # an async job calls the upstream in the background
        await upstream.arrived.wait()
    assert (b"X-Name", value) in upstream.raw[0]
