"""Hostile input through the real proxy: bad JSON, sizes, targets, slow and idle clients."""

from __future__ import annotations

import pytest
from aiohttp import web

from atkproxy.jobs import JobState
from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, ServerFactory, start_app
from .support import ASYNC, Echo, wait_job

DEEP = b"[" * 1000 + b"]" * 1000


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
async def upstream(echo: Echo, aiohttp_server: ServerFactory) -> str:
    return await start_app(aiohttp_server, echo.app)


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
    assert await store.in_states(list(JobState)) == [] and echo.seen == []


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
