"""Automatiko's own async scenarios, against the example backend through the proxy."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestServer

from .conftest import ProxyFactory, Receiver, url_of
from .support import ASYNC, wait_job

SEED = {"name": "john", "lastName": "doe"}


def with_callback(receiver: Receiver) -> dict[str, str]:
    return {**ASYNC, "X-ATK-Callback": receiver.url}


async def test_completion_with_callback(
    backend: TestServer, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(url_of(backend))
    async with proxy.post("/registrations", json=SEED, headers=with_callback(receiver)) as r:
        assert r.status == 202
        assert r.content_type == "application/json"
        accepted = await r.json()
        job_id, location = r.headers["X-ATK-Job"], r.headers["Location"]
        assert location == f"/_atk/jobs/{job_id}"
        assert r.headers["Retry-After"] == "1"
    instance_id = accepted.pop("id")
    assert accepted == SEED

    callback = await receiver.next()
    assert callback.method == "POST"
    assert callback.json() == {"id": instance_id, **SEED}
    assert callback.headers["X-ATK-Status"] == "Completed"
    assert callback.headers["X-ATK-Job"] == job_id
    assert callback.headers["X-ATK-Instance-Id"] == instance_id
    assert callback.headers["X-ATK-Upstream-Status"] == "200"
    assert callback.headers["X-ATK-Attempt"] == "1"
    assert callback.headers["Content-Type"].startswith("application/json")

    view = await wait_job(proxy, location, ("delivered",))
    assert view["status"] == "Completed"
    assert view["callback"]["attempts"][0]["status"] == 200


async def test_no_callback_header_means_no_post(
    backend: TestServer, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(url_of(backend))
    async with proxy.post("/registrations", json=SEED, headers=ASYNC) as r:
        assert r.status == 202
        location = r.headers["Location"]
    view = await wait_job(proxy, location)
    assert (view["state"], view["status"], view["callback"]) == ("finished", "Completed", None)
    assert receiver.received == []
    async with proxy.get(f"{location}/result") as r:
        assert r.status == 200
        assert (await r.json())["name"] == "john"


async def test_user_task_then_async_completion(
    backend: TestServer, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(url_of(backend))
    body = {**SEED, "approval": True}
    async with proxy.post("/registrations", json=body, headers=with_callback(receiver)) as r:
        assert r.status == 202
        instance_id = (await r.json())["id"]
    first = await receiver.next()
    assert first.headers["X-ATK-Status"] == "Active"
    assert first.json()["id"] == instance_id

    async with proxy.get(f"/registrations/{instance_id}/tasks") as r:
        assert r.status == 200
        task_id = (await r.json())[0]["id"]
    path = f"/registrations/{instance_id}/approval/{task_id}"
    async with proxy.post(path, json={"approved": True}, headers=with_callback(receiver)) as r:
        assert r.status == 202
        assert await r.json() == {"id": instance_id}
    second = await receiver.next()
    assert second.headers["X-ATK-Status"] == "Completed"
    assert second.headers["X-ATK-Instance-Id"] == instance_id
    assert second.json()["approved"] is True


async def test_error_end_event_is_aborted_with_error_data(
    backend: TestServer, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(url_of(backend))
    body = {**SEED, "age": 16}
    async with proxy.post("/registrations", json=body, headers=with_callback(receiver)) as r:
        assert r.status == 202
    callback = await receiver.next()
    assert callback.headers["X-ATK-Status"] == "Aborted"
    assert callback.headers["X-ATK-Upstream-Status"] == "409"
    assert callback.json() == {"error": "underage", "message": "registrant must be 18 or older"}


async def _final_status(
    proxy: Any, receiver: Receiver, method: str, path: str, body: Any = None
) -> tuple[str, str]:
    async with proxy.request(method, path, json=body, headers=with_callback(receiver)) as r:
        assert r.status == 202, await r.text()
    callback = await receiver.next()
    return callback.headers["X-ATK-Status"], callback.headers["X-ATK-Upstream-Status"]


async def test_execution_error_is_failed(
    backend: TestServer, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(url_of(backend))
    body = {"name": "crash", "lastName": "doe"}
    assert await _final_status(proxy, receiver, "POST", "/registrations", body) == ("Failed", "500")


async def test_signal_abort_and_business_key(
    backend: TestServer, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(url_of(backend))
    headers = with_callback(receiver)
    body = {**SEED, "approval": True}
    async with proxy.post("/registrations?businessKey=reg-7", json=body, headers=headers) as r:
        assert (await r.json())["id"] == "reg-7"
    assert (await receiver.next()).headers["X-ATK-Instance-Id"] == "reg-7"
    signal = await _final_status(proxy, receiver, "POST", "/registrations/reg-7/reminder")
    assert signal == ("Active", "200")
    assert await _final_status(proxy, receiver, "DELETE", "/registrations/reg-7") == (
        "Aborted",
        "200",
    )
    missing = await _final_status(proxy, receiver, "DELETE", "/registrations/reg-7")
    assert missing == ("Failed", "404")
