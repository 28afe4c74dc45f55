"""The management API: on the main port under its prefix (decoded paths), or on its own listener."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from ..conftest import free_port
from .conftest import ProxyFactory, ServerFactory, start_app
from .support import ASYNC, Echo, wait_job


async def get_raw(proxy: TestClient[Any, Any], path: str) -> aiohttp.ClientResponse:
    """A GET of `path` exactly as written (a client would normalise `%5F` to `_`)."""
    url = URL(str(proxy.make_url("")).rstrip("/") + path, encoded=True)
    return await proxy.session.get(url)


HEALTH_SPELLINGS = ["/_atk/health", "/%5Fatk/health", "/%5fatk/health", "/_%61tk/health"]


@pytest.mark.parametrize("path", HEALTH_SPELLINGS)
async def test_management_paths_are_matched_decoded(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, path: str
) -> None:
    echo = Echo()
    proxy = await make_proxy(await start_app(aiohttp_server, echo.app), automatiko=False)
    async with await get_raw(proxy, path) as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
    assert echo.seen == []  # the backend never saw it


async def test_a_separate_listener_takes_the_api_off_the_main_port(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    echo, port = Echo(), free_port()
    config = {"management": {"listen": {"host": "127.0.0.1", "port": port}}}
    proxy = await make_proxy(await start_app(aiohttp_server, echo.app), config, automatiko=False)
    for path in ("/_atk/health", "/%5Fatk/health", "/_atk/jobs"):  # all pass through
        async with await get_raw(proxy, path) as response:
            assert response.status == 200
            assert response.headers["X-Upstream"] == "echo"
    passed = ["/_atk/health", "/%5Fatk/health", "/_atk/jobs"]
    assert [seen["path_qs"] for seen in echo.seen] == passed

    async with proxy.post("/x", json={}, headers=ASYNC) as response:
        assert response.status == 202
        location = response.headers["Location"]
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as management:
        for path in ("/_atk/health", "/_atk/ready", "/_atk/jobs"):
            async with management.get(path) as response:
                assert response.status == 200, path
        async with management.get("/x") as response:  # nothing else answers there
            assert response.status == 404
        async with management.get(location) as response:
            assert response.status == 200
        await wait_job(management, location)  # type: ignore[arg-type]
    async with proxy.get(location) as response:  # on the main port: the backend's
        assert response.headers["X-Upstream"] == "echo"


async def test_the_separate_listener_closes_with_the_proxy(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    port = free_port()
    config = {"management": {"listen": {"host": "127.0.0.1", "port": port}}}
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), config, automatiko=False)
    await proxy.close()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"http://127.0.0.1:{port}/_atk/health")


async def test_a_callback_to_the_management_listener_is_refused(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    port = free_port()
    config = {"management": {"listen": {"host": "127.0.0.1", "port": port}}}
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), config, automatiko=False)
    callback = f"http://127.0.0.1:{port}/_atk/jobs/redeliver"  # loopback is allowed in tests
    async with proxy.post("/x", json={}, headers={**ASYNC, "X-ATK-Callback": callback}) as r:
        assert r.status == 400
        assert "the proxy" in (await r.json())["error"]
