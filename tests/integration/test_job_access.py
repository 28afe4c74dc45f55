"""Job access: a job made with credentials is shown only to them, or to the management token."""

from __future__ import annotations

import secrets
import subprocess
import sys
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from atkproxy import ownership
from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, ServerFactory, start_app
from .support import ASYNC, Echo, wait_job

ALICE = {"Authorization": "Basic YWxpY2U6cGFzcw=="}
BOB = {"Authorization": "Basic Ym9iOnBhc3M="}
OPERATOR = {"Authorization": "Bearer op-token"}
CONFIG = {"management": {"token": "op-token"}}


async def start_job(proxy: TestClient[Any, Any], headers: dict[str, str]) -> str:
    async with proxy.post("/x", json={"a": 1}, headers={**ASYNC, **headers}) as response:
        assert response.status == 202, await response.text()
        location: str = response.headers["Location"]
        return location


async def read(
    proxy: TestClient[Any, Any], location: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    async with proxy.get(location, headers=headers) as response:
        return response.status, await response.read()


async def test_a_job_with_credentials_is_shown_only_to_them(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), CONFIG, automatiko=False)
    location = await start_job(proxy, {**ALICE, "Cookie": "s=1"})
    job_id = location.rsplit("/", 1)[1]
    await wait_job(proxy, location, headers=OPERATOR)
    unknown = await read(proxy, location.replace(job_id, "0" * 32), {})
    assert unknown[0] == 404
    for path in (location, location + "/result"):
        for stranger in ({}, BOB, ALICE, {"Cookie": "s=1"}, {**BOB, "Cookie": "s=1"}):
            assert await read(proxy, path, stranger) == unknown, stranger  # existence hidden
        for allowed in ({**ALICE, "Cookie": "s=1"}, OPERATOR):
            status, _ = await read(proxy, path, allowed)
            assert status == 200, (path, allowed)


async def test_a_job_without_credentials_is_shown_to_its_id(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), CONFIG, automatiko=False)
    location = await start_job(proxy, {"X-Api-Key": "not a protected header"})
    await wait_job(proxy, location)
    assert (await read(proxy, location + "/result", {}))[0] == 200
    assert (await read(proxy, location + "/result", BOB))[0] == 200


async def test_the_owner_key_survives_a_new_app(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With management.owner_key, owners are recognised by another process on the store."""
    store, upstream = MemoryStore(), await start_app(aiohttp_server, Echo().app)
    config = {"management": {"token": "op-token", "owner_key": "shared"}}
    first = await make_proxy(upstream, config, automatiko=False, store=store)
    location = await start_job(first, ALICE)
    await wait_job(first, location, headers=ALICE)
    monkeypatch.setattr(ownership, "_PROCESS_KEY", secrets.token_bytes(32))  # a new process
    second = await make_proxy(upstream, config, automatiko=False, store=store)
    assert (await read(second, location, ALICE))[0] == 200
    assert (await read(second, location, BOB))[0] == 404


async def test_without_a_token_no_one_is_operator(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    """Loopback peers may list jobs without a token, but not read another's job."""
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), automatiko=False)
    location = await start_job(proxy, ALICE)
    await wait_job(proxy, location, headers=ALICE)
    assert (await read(proxy, location, {}))[0] == 404
    assert (await read(proxy, location, {"Authorization": "Bearer "}))[0] == 404
    async with proxy.get("/_atk/jobs") as response:  # the list needs the token (or loopback)
        assert response.status == 200


async def test_without_a_key_a_restart_leaves_owned_jobs_to_the_token(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No store.secret_key nor management.owner_key: the key of the process is gone with it."""
    store, upstream = MemoryStore(), await start_app(aiohttp_server, Echo().app)
    first = await make_proxy(upstream, CONFIG, automatiko=False, store=store)
    location = await start_job(first, ALICE)
    await wait_job(first, location, headers=ALICE)
    await first.close()
    monkeypatch.setattr(ownership, "_PROCESS_KEY", secrets.token_bytes(32))  # a new process
    second = await make_proxy(upstream, CONFIG, automatiko=False, store=store)
    assert (await read(second, location, ALICE))[0] == 404
    assert (await read(second, location + "/result", OPERATOR))[0] == 200


def test_each_process_has_its_own_key() -> None:
    code = "from atkproxy.ownership import owner_key; print(owner_key().hex())"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(2)}  # fmt: skip
    assert len(keys) == 2


async def test_an_idempotency_key_belongs_to_its_owner(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), CONFIG, automatiko=False)
    key = {"Idempotency-Key": "k-1"}
    alice = [await start_job(proxy, {**ALICE, **key}) for _ in range(2)]
    bob = await start_job(proxy, {**BOB, **key})
    assert alice[0] == alice[1]  # a repeat of Alice's
    assert bob != alice[0]  # Bob's own job, not a view of Alice's
    anonymous = [await start_job(proxy, key) for _ in range(2)]
    assert anonymous[0] == anonymous[1] and anonymous[0] not in (alice[0], bob)
