"""The low-level dispatch (server.py): pass-through and async accepts skip the application's
router; the management API, Expect and rejected requests still go through it. A request
answered on a direct path gets the answer and the count the routed path gives it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from atkproxy.app import create_app
from atkproxy.inflight import InFlight
from atkproxy.jobs import Job
from atkproxy.server import ProxyRunner
from atkproxy.store.memory import MemoryStore

from .conftest import ClientFactory, ProxyTestServer, ServerFactory, proxy_settings, start_app
from .support import ASYNC, Echo, FailingStore, until
from .test_metrics import scrape


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
        pytest.param("POST", "/things", ASYNC, 202, False, id="async"),
        pytest.param("DELETE", "/things/1", ASYNC, 202, False, id="async-delete"),
        pytest.param("POST", "/things", {"Prefer": "respond-async"}, 202, False, id="prefer"),
        pytest.param("POST", "/_atk/jobs", ASYNC, 202, True, id="async-management-routed"),
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


class NoJobStore(MemoryStore):
    """Records the job, then answers with nothing: the accept fails in a way nobody planned
    (an AttributeError), as a bug would."""

    async def add(self, job: Job) -> Job:
        await super().add(job)
        return None  # type: ignore[return-value]


JSON_ROUTE = {"path": "/{workflow}", "methods": ["POST"], "start": True, "id": [{"from": "assign"}]}
LIMITS = {"async": {"max_body": "1KiB", "max_headers": "4KiB", "routes": [JSON_ROUTE]}}
JSON = "application/json"
# (case, extra headers, body, Content-Type, the store), the same through both paths
ANSWERS = [
    ("accepted", {}, b'{"a": 1}', JSON, MemoryStore),
    ("via-prefer", {"X-ATK-Mode": "", "Prefer": "respond-async"}, b"{}", JSON, MemoryStore),
    ("callback-refused", {"X-ATK-Callback": "ftp://h/cb"}, b"{}", JSON, MemoryStore),
    ("headers-too-large", {"X-Big": "x" * 5000}, b"{}", JSON, MemoryStore),
    ("body-too-large", {}, b'{"a": "' + b"x" * 2000 + b'"}', JSON, MemoryStore),
    ("not-json", {}, b"name=john", "application/x-www-form-urlencoded", MemoryStore),
    ("malformed-json", {}, b'{"name": ', JSON, MemoryStore),
    ("store-failing", {}, b"{}", JSON, FailingStore),
    ("accept-bug", {}, b"{}", JSON, NoJobStore),
]


async def answer_and_count(
    client: TestClient[Any, Any], headers: dict[str, str], body: bytes
) -> tuple[int, dict[str, str], Any, dict[Any, float]]:
    """The answer (status, the headers that matter, the JSON body without the assigned id)
    and the requests counted."""
    async with client.post("/registrations", data=body, headers=headers) as r:
        kept = {k: r.headers.get(k, "") for k in ("Content-Type", "Retry-After")}
        kept |= {k: str(k in r.headers) for k in ("X-ATK-Job", "Location", "Preference-Applied")}
        doc = await r.json()
        doc.pop("id", None)
        status = r.status
    counted = {k: v for k, v in (await scrape(client)).items() if k[0] == "atkproxy_requests_total"}
    return status, kept, doc, counted


@pytest.mark.parametrize(
    ("case", "extra", "body", "ctype", "store_type"), ANSWERS, ids=[a[0] for a in ANSWERS]
)
async def test_an_async_request_gets_the_routed_answer_on_the_direct_path(
    aiohttp_server: ServerFactory,
    aiohttp_client: ClientFactory,
    case: str,
    extra: dict[str, str],
    body: bytes,
    ctype: str,
    store_type: type[MemoryStore],
) -> None:
    upstream = await start_app(aiohttp_server, Echo().app)
    headers = {**ASYNC, "Content-Type": ctype, **extra}
    headers = {k: v for k, v in headers.items() if v}
    answers = []
    for server_type in (TestServer, ProxyTestServer):  # the application's router, then direct
        store = store_type()
        app = create_app(proxy_settings(upstream, LIMITS, automatiko=False), store=store)
        client = await aiohttp_client(server_type(app))
        if isinstance(store, FailingStore):
            store.failing = True
        answers.append(await answer_and_count(client, headers, body))
    routed, direct = answers
    assert direct == routed
    assert direct[0] in (202, 400, 413, 415, 431, 500, 503)


async def test_an_async_request_on_the_direct_path_is_in_flight(
    aiohttp_server: ServerFactory,
) -> None:
    """The shutdown waits for the requests in flight: an accept whose body is still coming
    is one of them."""
    upstream = await start_app(aiohttp_server, Echo().app)
    app = create_app(proxy_settings(upstream, automatiko=False))
    in_flight = InFlight()

    runner = ProxyRunner(app, in_flight=in_flight)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        more = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            yield b'{"a":'
            await more.wait()
            yield b" 1}"

        async with aiohttp.ClientSession() as session:
            headers = {**ASYNC, "Content-Type": JSON}
            post = session.post(f"http://{host}:{port}/orders", data=body(), headers=headers)
            sending = asyncio.create_task(post.__aenter__())
            await until(lambda: in_flight.count == 1)  # counted once its head has arrived
            assert not in_flight.idle.is_set()
            more.set()
            response = await sending
            assert response.status == 202
            response.release()
        assert in_flight.count == 0 and in_flight.idle.is_set()
    finally:
        await runner.cleanup()
