"""Async requests: bad input is refused with a clear JSON error and nothing is recorded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, Receiver
from .support import ASYNC, Echo, FailingStore, header_names, idle, stored, wait_job

JSON_ROUTE = {
    "path": "/{workflow}",
    "methods": ["POST"],
    "start": True,
    "id": [{"from": "assign", "inject": "query", "name": "businessKey"}],
}


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def proxy(
    upstream: str, store: MemoryStore, make_proxy: ProxyFactory
) -> TestClient[Any, Any]:
    config = {"async": {"max_body": "1KiB", "routes": [JSON_ROUTE]}}
    return await make_proxy(upstream, config, automatiko=False, store=store)


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 256):
        yield b"x" * 256


BAD = [
    ("callback-relative", {"X-ATK-Callback": "/cb"}, b"{}", "application/json", 400),
    ("callback-ftp", {"X-ATK-Callback": "ftp://h/cb"}, b"{}", "application/json", 400),
    ("callback-garbage", {"X-ATK-Callback": "http://"}, b"{}", "application/json", 400),
    ("callback-user-info", {"X-ATK-Callback": "http://u:p@h/cb"}, b"{}", "application/json", 400),
    ("mode-unknown", {"X-ATK-Mode": "later"}, b"{}", "application/json", 400),
    ("too-large", {}, b'{"a": "' + b"x" * 2000 + b'"}', "application/json", 413),
    ("not-json-type", {}, b"name=john", "application/x-www-form-urlencoded", 415),
    ("malformed-json", {}, b'{"name": ', "application/json", 400),
    ("start-needs-object", {}, b"[1, 2]", "application/json", 400),
]


@pytest.mark.parametrize(
    ("case", "headers", "body", "ctype", "status"), BAD, ids=[b[0] for b in BAD]
)
async def test_bad_input_is_refused_and_not_recorded(
    proxy: TestClient[Any, Any],
    store: MemoryStore,
    echo: Echo,
    case: str,
    headers: dict[str, str],
    body: bytes,
    ctype: str,
    status: int,
) -> None:
    sent = {**ASYNC, "Content-Type": ctype, **headers}
    async with proxy.post("/registrations", data=body, headers=sent) as r:
        assert r.status == status
        assert r.content_type == "application/json"
        error = await r.json()
    assert error["status"] == status and error["error"]
    assert await stored(store) == 0
    assert echo.seen == []


async def test_chunked_body_over_the_limit_is_413(
    proxy: TestClient[Any, Any], store: MemoryStore
) -> None:
    headers = {**ASYNC, "Content-Type": "application/json"}
    async with proxy.post("/registrations", data=chunks(4096), headers=headers) as r:
        assert r.status == 413
    assert await stored(store) == 0


async def body_of(size: int) -> AsyncIterator[bytes]:
    """A JSON document of `size` bytes, sent chunked (no Content-Length) in two parts."""
    doc = b'{"a": "' + b"x" * (size - 9) + b'"}'
    yield doc[: size // 2]
    yield doc[size // 2 :]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("size", "status"), [(1024, 202), (1025, 413), (9, 202)])
async def test_the_body_limit_holds_whether_the_body_came_with_the_head_or_not(
    proxy: TestClient[Any, Any], store: MemoryStore, chunked: bool, size: int, status: int
) -> None:
    """A small body that came whole with the head is taken as it is; others are read."""
    doc = b'{"a": "' + b"x" * (size - 9) + b'"}'
    body = body_of(size) if chunked else doc
    headers = {**ASYNC, "Content-Type": "application/json"}
    async with proxy.post("/registrations", data=body, headers=headers) as r:
        assert r.status == status
        answer = await r.json()
    if status == 202:
        assert answer["a"] == "x" * (size - 9)
    assert await stored(store) == (status == 202)


async def test_async_headers_are_not_forwarded_and_id_is_injected(
    proxy: TestClient[Any, Any], echo: Echo, receiver: Receiver
) -> None:
    headers = {**ASYNC, "X-ATK-Callback": receiver.url, "X-Trace": "t1"}
    async with proxy.post("/registrations?x=1", json={"name": "a"}, headers=headers) as r:
        assert r.status == 202
        instance_id = (await r.json())["id"]
    seen = (await receiver.next()).json()
    assert seen["path_qs"] == f"/registrations?x=1&businessKey={instance_id}"
    assert not any(name.startswith("x-atk-") for name in header_names(seen))
    assert "x-trace" in header_names(seen)


async def test_prefer_respond_async(proxy: TestClient[Any, Any]) -> None:
    headers = {"Prefer": "respond-async, wait=10"}
    async with proxy.post("/registrations", json={"name": "a"}, headers=headers) as r:
        assert r.status == 202
        assert r.headers["Preference-Applied"] == "respond-async"


async def test_202_does_not_wait_for_the_upstream(
    proxy: TestClient[Any, Any], echo: Echo, receiver: Receiver
) -> None:
    headers = {**ASYNC, "X-ATK-Callback": receiver.url}
    # The upstream holds every /hold request until released: a proxy that waited for it
    # before answering would never send the 202, and the timeout below would fail the test.
    async with asyncio.timeout(5), proxy.put("/hold/1", json={}, headers=headers) as r:
        assert r.status == 202
        location = r.headers["Location"]
    await echo.arrived.get()
    assert (await wait_job(proxy, location, ("running",)))["status"] is None
    assert receiver.received == []
    echo.release.set()
    callback = await receiver.next()
    assert callback.headers["X-ATK-Status"] == "Completed"


async def test_full_queue_is_503_with_retry_after_and_loses_nothing(
    upstream: str, echo: Echo, make_proxy: ProxyFactory, store: MemoryStore
) -> None:
    config = {"async": {"max_inflight": 1, "max_queue": 1, "retry_after": 7}}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)
    locations = []
    for n in range(2):
        async with proxy.put(f"/hold/{n}", json={}, headers=ASYNC) as r:
            assert r.status == 202
            locations.append(r.headers["Location"])
        if n == 0:
            await echo.arrived.get()  # the first runs; the second waits in the queue
    with structlog.testing.capture_logs() as logs:
        for n in (2, 3):
            async with proxy.put(f"/hold/{n}", json={}, headers=ASYNC) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "7"
    # one line for the burst, not one per refusal
    assert [(line["event"], line["refused"]) for line in logs] == [
        ("shedding load: the job queue is full", 1)
    ]
    echo.release.set()
    for location in locations:
        assert (await wait_job(proxy, location))["status"] == "Completed"
    assert await stored(store) == 2


async def test_job_api_unknown_id_and_result(proxy: TestClient[Any, Any], echo: Echo) -> None:
    async with proxy.get("/_atk/jobs/nope") as r:
        assert r.status == 404
        assert await r.json() == {"error": "no such job", "status": 404}
    async with proxy.delete("/status/418", headers=ASYNC) as r:
        location = r.headers["Location"]
    view = await wait_job(proxy, location)
    assert (view["status"], view["upstream"]["status"]) == ("Failed", 418)
    async with proxy.get(f"{location}/result") as r:
        assert r.status == 418
        assert await r.read() == b'{"code": 418}'


async def test_health_and_ready(proxy: TestClient[Any, Any]) -> None:
    for path, expected in [
        ("/_atk/health", {"status": "ok"}),
        ("/_atk/ready", {"status": "ready"}),
    ]:
        async with proxy.get(path) as r:
            assert (r.status, await r.json()) == (200, expected)


async def test_store_failure_is_503_json_and_nothing_runs(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    store = FailingStore()
    proxy = await make_proxy(upstream, automatiko=False, store=store)
    store.failing = True  # the disk fills up under the running proxy
    async with proxy.post("/x", json={}, headers=ASYNC) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "1"
        assert (await r.json())["error"].startswith("job store unavailable")
    async with proxy.get("/_atk/ready") as r:
        assert r.status == 503
    assert echo.seen == []


BODY_ID_ROUTE = {"path": "/orders", "id": [{"from": "body", "name": "/orderId"}]}


@pytest.mark.parametrize(
    "order_id", ["abc\r\nX-Evil: 1", "tab\there", "x" * 257], ids=["crlf", "tab", "too-long"]
)
async def test_unsafe_instance_ids_are_refused(
    upstream: str, make_proxy: ProxyFactory, store: MemoryStore, order_id: str
) -> None:
    config = {"async": {"routes": [BODY_ID_ROUTE]}}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)
    async with proxy.post("/orders", json={"orderId": order_id}, headers=ASYNC) as r:
        assert r.status == 400
        assert "instance id must be printable" in (await r.json())["error"]
    assert await stored(store) == 0


async def test_queue_limit_holds_under_concurrent_requests(
    upstream: str, echo: Echo, make_proxy: ProxyFactory, store: MemoryStore
) -> None:
    config = {"async": {"max_inflight": 1, "max_queue": 2}}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)

    async def submit(n: int) -> int:
        async with proxy.put(f"/hold/{n}", json={}, headers=ASYNC) as r:
            return r.status

    statuses = await asyncio.gather(*(submit(n) for n in range(20)))
    accepted = statuses.count(202)
    # at most two waiting, plus the one the runner may already have taken
    assert 2 <= accepted <= 3
    assert statuses.count(503) == 20 - accepted
    assert await stored(store) == accepted
    echo.release.set()
    await idle(proxy)


async def test_respond_async_preference_is_not_forwarded(
    proxy: TestClient[Any, Any], echo: Echo, receiver: Receiver
) -> None:
    headers = {"Prefer": "respond-async, wait=10", "X-ATK-Callback": receiver.url}
    async with proxy.post("/registrations", json={"name": "a"}, headers=headers) as r:
        assert r.status == 202
    seen = (await receiver.next()).json()
    assert [v for k, v in seen["headers"] if k == "Prefer"] == ["wait=10"]


async def test_answer_over_max_result_fails_the_job_with_a_reason(
    upstream: str, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, {"async": {"max_result": "64KiB"}}, automatiko=False)
    async with proxy.delete(f"/bytes/{1 << 20}", headers=ASYNC) as r:
        location = r.headers["Location"]
    view = await wait_job(proxy, location)
    assert (view["status"], view["upstream"]["status"]) == ("Failed", 502)
    assert view["reason"] == "upstream answer exceeds async.max_result (65536 bytes)"
