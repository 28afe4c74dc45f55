"""GET <prefix>/metrics: what the proxy did, in the Prometheus text format."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from atkproxy.jobs import JobState
from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, Receiver, ServerFactory, start_app
from .support import ASYNC, Echo, idle, wait_job

Client = TestClient[Any, Any]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> str:
    return await start_app(aiohttp_server, Echo().app)


async def scrape(proxy: Client) -> Samples:
    async with proxy.get("/_atk/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def submit(proxy: Client, callback: str, path: str = "/orders") -> str:
    headers = {**ASYNC, "X-ATK-Callback": callback}
    async with proxy.post(path, json={"n": 1}, headers=headers) as response:
        assert response.status == 202
        location: str = response.headers["Location"]
        return location


async def test_a_job_with_a_callback_shows_in_the_metrics(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    await wait_job(proxy, await submit(proxy, receiver.url), ("delivered",))
    async with proxy.get("/orders/1") as response:  # one pass-through
        assert response.status == 200
    await idle(proxy)

    m = await scrape(proxy)

    assert value(m, "atkproxy_requests_total", mode="async", status="202") == 1
    assert value(m, "atkproxy_requests_total", mode="sync", status="200") == 1
    assert value(m, "atkproxy_callback_attempts_total", outcome="delivered") == 1
    assert value(m, "atkproxy_callback_attempts_total", outcome="retry") == 0
    assert value(m, "atkproxy_jobs", state="delivered") == 1
    assert value(m, "atkproxy_jobs", state="accepted") == 0
    assert value(m, "atkproxy_upstream_seconds_count", mode="async") == 1
    assert value(m, "atkproxy_upstream_seconds_count", mode="sync") == 1
    assert value(m, "atkproxy_backlog", lane="upstream") == 0
    assert value(m, "atkproxy_backlog", lane="delivery") == 0
    assert value(m, "atkproxy_inflight", lane="upstream") == 0
    assert value(m, "atkproxy_waiting") == 0
    assert value(m, "atkproxy_dead_letters") == 0
    assert value(m, "atkproxy_store_up") == 1


async def test_every_store_operation_of_a_job_is_timed(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    location = await submit(proxy, receiver.url)
    await wait_job(proxy, location, ("delivered",))
    await idle(proxy)

    m = await scrape(proxy)

    for operation in ("add", "claim", "update", "get", "counts"):
        count = value(m, "atkproxy_store_seconds_count", operation=operation)
        assert count is not None and count >= 1, operation
        assert value(m, "atkproxy_store_seconds_bucket", operation=operation, le="+Inf") == count
    assert value(m, "atkproxy_store_seconds_count", operation="add") == 1


@pytest.mark.parametrize(("answer", "outcome"), [(500, "dead"), (410, "stopped")])
async def test_a_dead_job_is_a_dead_letter(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory, answer: int, outcome: str
) -> None:
    receiver.respond_with = [answer]
    config = {"callback": {"retry": {"schedule": ["0s"]}}}  # one attempt
    proxy = await make_proxy(upstream, config, automatiko=False)
    await wait_job(proxy, await submit(proxy, receiver.url), ("dead",))

    m = await scrape(proxy)

    assert value(m, "atkproxy_dead_letters") == 1
    assert value(m, "atkproxy_jobs", state="dead") == 1
    assert value(m, "atkproxy_callback_attempts_total", outcome=outcome) == 1
    assert value(m, "atkproxy_callback_attempts_total", outcome="delivered") == 0


async def test_a_failed_attempt_then_a_delivery(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    receiver.respond_with = [500]
    config = {"callback": {"retry": {"schedule": ["0s", "10ms"]}}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    await wait_job(proxy, await submit(proxy, receiver.url), ("delivered",))

    m = await scrape(proxy)

    assert value(m, "atkproxy_callback_attempts_total", outcome="retry") == 1
    assert value(m, "atkproxy_callback_attempts_total", outcome="delivered") == 1


async def test_an_upstream_not_reached_counts_retries(
    receiver: Receiver, make_proxy: ProxyFactory, unused_tcp_port: int
) -> None:
    config = {"upstream": {"retry": {"schedule": ["10ms"], "max_age": "1m"}}}
    proxy = await make_proxy(f"http://127.0.0.1:{unused_tcp_port}", config, automatiko=False)
    await submit(proxy, receiver.url)

    end = time.monotonic() + 10
    while (value(m := await scrape(proxy), "atkproxy_upstream_retries_total") or 0) < 2:
        assert time.monotonic() < end, "no second retry counted"
        await idle(proxy)  # each return: one more try (nothing is due between two)

    assert value(m, "atkproxy_backlog", lane="upstream") == 1
    assert value(m, "atkproxy_jobs", state="accepted") == 1
    assert value(m, "atkproxy_upstream_seconds_count", mode="async") == 0  # no answer, no latency


@pytest.mark.parametrize(
    ("headers", "method", "mode", "status"),
    [
        ({"X-ATK-Mode": "later"}, "POST", "sync", 400),  # neither mode: counted as the default
        ({**ASYNC, "X-ATK-Callback": "ftp://x"}, "POST", "async", 400),  # refused async
        ({"Prefer": "respond-async"}, "POST", "async", 202),
        (ASYNC, "GET", "sync", 200),  # a read is served synchronously
        ({}, "DELETE", "sync", 200),
    ],
)
async def test_requests_are_counted_by_mode_and_status(
    upstream: str,
    make_proxy: ProxyFactory,
    headers: dict[str, str],
    method: str,
    mode: str,
    status: int,
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    async with proxy.request(method, "/orders", headers=headers) as response:
        assert response.status == status

    m = await scrape(proxy)

    counted = {k: v for k, v in m.items() if k[0] == "atkproxy_requests_total"}
    assert counted == {
        ("atkproxy_requests_total", frozenset({("mode", mode), ("status", str(status))})): 1
    }


async def test_two_apps_in_one_process_count_apart(upstream: str, make_proxy: ProxyFactory) -> None:
    first, second = await make_proxy(upstream), await make_proxy(upstream)
    async with first.get("/orders") as response:
        assert response.status == 200

    assert value(await scrape(first), "atkproxy_requests_total", mode="sync", status="200") == 1
    assert value(await scrape(second), "atkproxy_requests_total", mode="sync", status="200") is None


class UnreadableCounts(MemoryStore):
    """Counts fail once `failing` is set (after the start, which reads them too)."""

    failing = False

    async def counts(self) -> dict[JobState, int]:
        if self.failing:
            raise OSError("the store went away")
        return await super().counts()


async def test_a_store_that_cannot_be_read_leaves_the_job_gauges_out(
    upstream: str, make_proxy: ProxyFactory
) -> None:
    store = UnreadableCounts()
    proxy = await make_proxy(upstream, store=store)
    store.failing = True

    m = await scrape(proxy)

    assert value(m, "atkproxy_store_up") == 0
    assert not [name for name, _ in m if name in ("atkproxy_jobs", "atkproxy_dead_letters")]
    assert value(m, "atkproxy_inflight", lane="delivery") == 0


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
async def test_the_job_gauges_come_from_each_store(
    upstream: str,
    receiver: Receiver,
    make_proxy: ProxyFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    kind: str,
) -> None:
    url = (
        f"sqlite:///{tmp_path}/jobs.db"
        if kind == "sqlite"
        else request.getfixturevalue("redis_url")
    )
    receiver.respond_with = [500]
    config = {"store": {"url": url}, "callback": {"retry": {"schedule": ["0s"]}}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    await wait_job(proxy, await submit(proxy, receiver.url), ("dead",))
    await wait_job(proxy, await submit(proxy, receiver.url), ("delivered",))
    await idle(proxy)

    m = await scrape(proxy)

    assert value(m, "atkproxy_jobs", state="dead") == 1
    assert value(m, "atkproxy_jobs", state="delivered") == 1
    assert value(m, "atkproxy_dead_letters") == 1
    assert value(m, "atkproxy_backlog", lane="delivery") == 0
    assert value(m, "atkproxy_store_seconds_count", operation="add") == 2


async def test_a_running_job_is_in_flight_and_in_the_backlog(
    aiohttp_server: ServerFactory, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    echo = Echo()
    proxy = await make_proxy(await start_app(aiohttp_server, echo.app), automatiko=False)
    location = await submit(proxy, receiver.url, "/hold/1")
    await echo.arrived.get()

    m = await scrape(proxy)
    echo.release.set()

    assert value(m, "atkproxy_inflight", lane="upstream") == 1
    assert value(m, "atkproxy_jobs", state="running") == 1
    assert value(m, "atkproxy_backlog", lane="upstream") == 1
    await wait_job(proxy, location, ("delivered",))
    assert value(await scrape(proxy), "atkproxy_inflight", lane="upstream") == 0


async def test_openmetrics_when_asked_and_no_created_series(
    upstream: str, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream)
    accept = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with proxy.get("/_atk/metrics", headers=accept) as response:
        assert response.content_type == "application/openmetrics-text"
        assert (await response.text()).endswith("# EOF\n")
    async with proxy.get("/_atk/metrics") as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "_created" not in await response.text()
