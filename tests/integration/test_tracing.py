"""W3C trace context: an async request's traceparent/tracestate reach the upstream and the
callback and name the job's log lines; pass-through leaves them as they are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from .conftest import ProxyFactory, Receiver
from .support import ASYNC, Echo, wait_job

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
TRACED = {"traceparent": PARENT, "tracestate": STATE}
WITH_CONTEXT = [structlog.contextvars.merge_contextvars]  # the job's bound fields too


def seen_header(seen: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in seen["headers"] if k.lower() == name]


async def submit(proxy: Any, callback: str, headers: dict[str, str], path: str = "/orders") -> str:
    async with proxy.post(
        path, json={}, headers={**ASYNC, "X-ATK-Callback": callback, **headers}
    ) as response:
        assert response.status == 202
        location: str = response.headers["Location"]
        return location


async def test_the_trace_reaches_the_upstream_the_callback_and_the_job_log_lines(
    echo: Echo, upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    with capture_logs(processors=WITH_CONTEXT) as logs:
        view = await wait_job(proxy, await submit(proxy, receiver.url, TRACED), ("delivered",))

    [seen] = echo.seen
    assert (seen_header(seen, "traceparent"), seen_header(seen, "tracestate")) == (
        [PARENT],
        [STATE],
    )
    [callback] = receiver.received
    assert callback.headers.getall("traceparent") == [PARENT]
    assert callback.headers.getall("tracestate") == [STATE]
    traced = {line["event"] for line in logs if line.get("trace_id") == TRACE_ID}
    assert {"job accepted", "job finished", "callback delivered"} <= traced
    assert all(line["job"] == view["job"] for line in logs if "trace_id" in line)


async def test_an_invalid_traceparent_is_passed_upstream_but_not_kept(
    echo: Echo, upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    invalid = {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01", "tracestate": STATE}
    proxy = await make_proxy(upstream, automatiko=False)
    with capture_logs(processors=WITH_CONTEXT) as logs:
        await wait_job(proxy, await submit(proxy, receiver.url, invalid), ("delivered",))

    [seen] = echo.seen
    assert seen_header(seen, "traceparent") == [invalid["traceparent"]]  # as the client sent it
    assert seen_header(seen, "tracestate") == [STATE]
    [callback] = receiver.received
    assert "traceparent" not in callback.headers and "tracestate" not in callback.headers
    assert [line for line in logs if "trace_id" in line] == []
    assert "job accepted" in {line["event"] for line in logs}


async def test_a_job_claimed_from_the_store_keeps_its_trace(
    echo: Echo, upstream: str, receiver: Receiver, make_proxy: ProxyFactory, tmp_path: Path
) -> None:
    config = {"store": {"url": f"sqlite:///{tmp_path}/jobs.db"}, "async": {"max_inflight": 1}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    first = await submit(proxy, receiver.url, {}, "/hold/1")
    await echo.arrived.get()  # it holds the one upstream slot: the next job waits in the store
    second = await submit(proxy, receiver.url, {"traceparent": PARENT}, "/hold/2")
    echo.release.set()

    for location in (first, second):
        await wait_job(proxy, location, ("delivered",))

    parents = {r.json()["path_qs"]: r.headers.get("traceparent") for r in receiver.received}
    assert parents == {"/hold/1": None, "/hold/2": PARENT}


@pytest.mark.parametrize("parent", [PARENT, "not-a-traceparent", PARENT.upper()])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_pass_through_leaves_the_trace_headers_untouched(
    echo: Echo, upstream: str, make_proxy: ProxyFactory, parent: str, method: str
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    headers = {"traceparent": parent, "tracestate": STATE}
    async with proxy.request(method, "/orders/7", headers=headers) as response:
        assert response.status == 200

    [seen] = echo.seen
    assert (seen_header(seen, "traceparent"), seen_header(seen, "tracestate")) == (
        [parent],
        [STATE],
    )
