"""The low-level dispatch (server.py): pass-through skips the application's router; the
management API, async requests and rejected ones still go through it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from atkproxy.app import create_app

from .conftest import ClientFactory, ProxyTestServer, ServerFactory, proxy_settings, start_app
from .support import ASYNC, Echo


@pytest.fixture
def routed() -> list[str]:
    return []


@pytest.fixture
async def proxy(
    aiohttp_server: ServerFactory, aiohttp_client: ClientFactory, routed: list[str]
) -> TestClient[Any, Any]:
    upstream = await start_app(aiohttp_server, Echo().app)
    app = create_app(proxy_settings(upstream, automatiko=False))

    async def seen_by_the_router(request: web.Request, response: web.StreamResponse) -> None:
        routed.append(request.path)  # the application's signal: only routed requests have one

    app.on_response_prepare.append(seen_by_the_router)
    return await aiohttp_client(ProxyTestServer(app))


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "via_router"),
    [
        pytest.param("GET", "/things", {}, 200, False, id="pass-through"),
        pytest.param("POST", "/things", {"X-ATK-Mode": "sync"}, 200, False, id="sync"),
        pytest.param("GET", "/things", ASYNC, 200, False, id="async-get-passes"),
        pytest.param("GET", "/_atkish", {}, 200, True, id="prefix-lookalike-routed"),
        pytest.param("GET", "/_atk/health", {}, 200, True, id="management"),
        pytest.param("POST", "/things", ASYNC, 202, True, id="async"),
        pytest.param("POST", "/things", {"Prefer": "respond-async"}, 202, True, id="prefer"),
        pytest.param(
            "POST", "/things", {"Prefer": "return=minimal"}, 200, False, id="prefer-other"
        ),
        pytest.param("POST", "/things", {"X-ATK-Mode": "bogus"}, 400, True, id="rejected"),
    ],
)
async def test_dispatch(
    proxy: TestClient[Any, Any],
    routed: list[str],
    method: str,
    path: str,
    headers: dict[str, str],
    status: int,
    via_router: bool,
) -> None:
    async with proxy.request(method, path, headers=headers, json={}) as r:
        assert r.status == status
        await r.read()
    assert routed == ([path] if via_router else [])


async def test_expect_100_continue_is_answered(
    proxy: TestClient[Any, Any], routed: list[str]
) -> None:
    # aiohttp's client waits for the 100 before it sends the body
    async with asyncio.timeout(5), proxy.post("/things", data=b"x" * 10, expect100=True) as r:
        assert r.status == 200
        assert (await r.json())["body"] == "x" * 10
    assert routed == ["/things"]
