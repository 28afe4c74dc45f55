"""What the callback receiver gets, or why it got nothing, is recorded on the job."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from .conftest import ProxyFactory, Receiver, ServerFactory, start_app
from .support import ASYNC, Echo, wait_job


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> str:
    return await start_app(aiohttp_server, Echo().app)


ONCE = {"callback": {"retry": {"schedule": ["0s"]}}}  # one attempt, then dead


async def submit(proxy: Any, path: str, callback: str) -> str:
    headers = {**ASYNC, "X-ATK-Callback": callback}
    async with proxy.post(path, json={"n": 1}, headers=headers) as r:
        assert r.status == 202
        location: str = r.headers["Location"]
        return location


@pytest.mark.parametrize("code", [401, 403])
async def test_upstream_security_refusal_sends_no_callback(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory, code: int
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    view = await wait_job(proxy, await submit(proxy, f"/status/{code}", receiver.url))
    assert (view["state"], view["status"], view["upstream"]["status"]) == (
        "finished",
        "Failed",
        code,
    )
    assert view["callback"]["attempts"] == []
    assert receiver.received == []


async def test_refused_delivery_is_recorded_and_dead(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    receiver.respond_with = [500]
    proxy = await make_proxy(upstream, ONCE, automatiko=False)
    view = await wait_job(proxy, await submit(proxy, "/x", receiver.url))
    assert view["state"] == "dead"
    [attempt] = view["callback"]["attempts"]
    assert (attempt["attempt"], attempt["status"], attempt["error"]) == (1, 500, None)
    assert len(receiver.received) == 1


async def test_redirects_are_not_followed(
    upstream: str, receiver: Receiver, aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(receiver.url)

    redirector = web.Application()
    redirector.router.add_post("/cb", moved)
    proxy = await make_proxy(upstream, ONCE, automatiko=False)
    location = await submit(proxy, "/x", await start_app(aiohttp_server, redirector) + "/cb")
    view = await wait_job(proxy, location)
    assert (view["state"], view["callback"]["attempts"][0]["status"]) == ("dead", 302)
    assert receiver.received == []


async def test_unreachable_receiver_is_recorded(upstream: str, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(upstream, ONCE, automatiko=False)
    view = await wait_job(proxy, await submit(proxy, "/x", "http://127.0.0.1:9/cb?token=s3cr3t"))
    [attempt] = view["callback"]["attempts"]
    assert view["state"] == "dead"
    assert attempt["status"] is None
    assert attempt["error"].startswith("callback failed: ClientConnectorError")
    assert view["callback"]["url"] == "http://127.0.0.1:9/cb?token=***"


async def test_unreachable_upstream_is_failed_with_the_sync_error_as_body(
    receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    retry = {"schedule": ["10ms"], "max_age": "30ms"}  # given up after a few tries
    config = {"upstream": {"retry": retry}}
    proxy = await make_proxy("http://127.0.0.1:9", config, automatiko=False)
    view = await wait_job(proxy, await submit(proxy, "/x", receiver.url))
    callback = await receiver.next()
    assert callback.headers["X-ATK-Status"] == "Failed"
    assert callback.headers["X-ATK-Upstream-Status"] == "502"
    assert callback.json()["error"].startswith("upstream not reached")
    assert view["upstream_tries"] == 3
    assert view["reason"] == view["upstream"]["error"] == callback.json()["error"]


async def test_receiver_status_decides_without_reading_its_body(
    upstream: str, aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    never = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=200)
        await response.prepare(request)
        await response.write(b"x" * 65536)
        await never.wait()  # the rest of the body never comes
        return response

    receiver = web.Application()
    receiver.router.add_post("/cb", endless)
    proxy = await make_proxy(upstream, {"callback": {"timeout": "2s"}}, automatiko=False)
    url = await start_app(aiohttp_server, receiver) + "/cb"
    view = await wait_job(proxy, await submit(proxy, "/x", url))
    assert view["state"] == "delivered"
    assert view["callback"]["attempts"][0]["status"] == 200
    never.set()
