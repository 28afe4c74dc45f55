"""Callback destinations through the real proxy: refused at accept, or when dialled."""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from yarl import URL

from atkproxy.callback import callback_client, describe
from atkproxy.destinations import Policy
from atkproxy.dial import DestinationRefused
from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, Receiver
from .support import ASYNC, Echo, stored, wait_job

LOOPBACK_SPELLINGS = [
    "http://127.1:{port}/cb",
    "http://2130706433:{port}/cb",
    "http://0x7f000001:{port}/cb",
    "http://0177.0.0.1:{port}/cb",
    "http://127.0.0.2:{port}/cb",
    "http://[::1]:{port}/cb",
    "http://[::ffff:127.0.0.1]:{port}/cb",
    "http://[64:ff9b::7f00:1]:{port}/cb",
    "http://[2002:7f00:1::1]:{port}/cb",
    "http://[::127.0.0.1]:{port}/cb",
    "http://0.0.0.0:{port}/cb",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]:{port}/cb",
    "http://user:pw@127.0.0.1:{port}/cb",
    "http://127.0.0.1:{port}/" + "x" * 2048,
    "file:///etc/passwd",
]


async def refused(proxy: Any, callback: str) -> str:
    headers = {**ASYNC, "X-ATK-Callback": callback}
    async with proxy.post("/x", json={"n": 1}, headers=headers) as r:
        assert r.status == 400, await r.text()
        body = await r.json()
    assert body["status"] == 400
    reason: str = body["error"]
    assert reason.startswith("X-ATK-Callback refused: ")
    assert "/cb" not in reason  # the reason, never the URL
    return reason


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
async def test_refused_at_accept_and_nothing_recorded(
    upstream: str, echo: Echo, receiver: Receiver, make_proxy: ProxyFactory, spelling: str
) -> None:
    store = MemoryStore()
    proxy = await make_proxy(upstream, automatiko=False, store=store)
    await refused(proxy, spelling.format(port=receiver.url.split(":")[2].split("/")[0]))
    assert await stored(store) == 0
    assert echo.seen == [] and receiver.received == []


async def test_the_proxy_and_the_upstream_are_refused_even_when_allowed(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    store = MemoryStore()
    proxy = await make_proxy(upstream, automatiko=False, store=store)  # allows 127.0.0.1/32
    own = str(proxy.make_url("/_atk/health"))
    assert "the proxy's own address" in await refused(proxy, own)
    assert "the upstream's own address" in await refused(proxy, f"{upstream}/x")
    assert await stored(store) == 0
    assert echo.seen == []


async def test_loopback_refused_by_default(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, {"callback": {"destinations": {"allow": []}}})
    assert "loopback address 127.0.0.1" in await refused(proxy, receiver.url)


async def test_outside_the_allow_list_refused(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    config = {"callback": {"destinations": {"allow": ["*.example"]}}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    assert "not in callback.destinations.allow" in await refused(proxy, receiver.url)
    assert receiver.received == []


@pytest.mark.parametrize("allow", [[], ["localhost"]], ids=["default", "name-allowed"])
async def test_a_name_resolving_to_a_denied_address_is_refused_when_dialled(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory, allow: list[str]
) -> None:
    config = {"callback": {"destinations": {"allow": allow}}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    callback = receiver.url.replace("127.0.0.1", "localhost") + "?token=s3cr3t"
    async with proxy.post("/x", json={}, headers={**ASYNC, "X-ATK-Callback": callback}) as r:
        assert r.status == 202
        location = r.headers["Location"]
    view = await wait_job(proxy, location)
    [attempt] = view["callback"]["attempts"]
    assert view["state"] == "dead"
    assert attempt["status"] is None
    assert attempt["error"].startswith("callback failed: destination refused: loopback address")
    assert "s3cr3t" not in attempt["error"] and "localhost" not in attempt["error"]
    assert receiver.received == []


async def test_a_name_in_an_allowed_range_is_delivered(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)  # allows 127.0.0.1/32
    callback = receiver.url.replace("127.0.0.1", "localhost")
    async with proxy.post("/x", json={}, headers={**ASYNC, "X-ATK-Callback": callback}) as r:
        assert r.status == 202
    got = await receiver.next()
    assert got.method == "POST"


async def test_the_callback_client_refuses_a_literal_address_itself(receiver: Receiver) -> None:
    # A recorded job (from before a policy change) is checked again when it is delivered.
    async with callback_client(5.0, Policy()) as client:
        with pytest.raises(DestinationRefused) as caught:
            await client.post(URL(receiver.url), [], b"{}")
    assert describe(caught.value) == "destination refused: loopback address 127.0.0.1"
    assert receiver.received == []


CUSTOM_AUTH = {"type": "custom", "custom_name": "X-Key", "custom_value": "s3cr3t-value"}


async def test_credentials_do_not_go_outside_the_allow_list(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    config = {"callback": {"auth": CUSTOM_AUTH, "destinations": {"allow": ["cb.example"]}}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    assert "not in callback.destinations.allow" in await refused(proxy, receiver.url)
    assert receiver.received == []


async def test_credentials_to_any_destination_warn_at_start(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    config = {"callback": {"auth": {**CUSTOM_AUTH, "any_destination": True}}}
    with structlog.testing.capture_logs() as logs:
        await make_proxy(upstream, config, automatiko=False)
    [warning] = [line for line in logs if "any_destination" in line["event"]]
    assert warning["log_level"] == "warning"
    assert "s3cr3t-value" not in repr(logs)


async def test_an_upstream_named_by_host_name_is_refused_by_address(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    by_name = upstream.replace("127.0.0.1", "localhost")
    proxy = await make_proxy(by_name, automatiko=False)  # allows 127.0.0.1/32
    assert "the upstream's own address" in await refused(proxy, f"{upstream}/x")
    assert "own address" in await refused(proxy, f"{by_name}/x")
    assert echo.seen == []
