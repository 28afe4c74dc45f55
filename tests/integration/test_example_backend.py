"""The example workflow backend and the callback receiver, served on 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from atkproxy.demo.backend import create_backend
from atkproxy.demo.receiver import CallbackReceiver

Client = TestClient[Any, Any]


@pytest.fixture
async def backend(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_backend())


@pytest.fixture
def receiver() -> CallbackReceiver:
    return CallbackReceiver()


@pytest.fixture
async def receiver_client(aiohttp_client: AiohttpClient, receiver: CallbackReceiver) -> Client:
    return await aiohttp_client(receiver.app)


async def _start(backend: Client, body: Any, **query: str) -> tuple[int, Any]:
    response = await backend.post("/registrations", json=body, params=query)
    return response.status, await response.json()


async def _status(backend: Client, method: str, path: str) -> int:
    response = await backend.request(method, path)
    return response.status


# --- starting an instance: the decisions ---


async def test_start_completes_at_once_and_keeps_nothing(backend: Client) -> None:
    status, model = await _start(backend, {"name": "john", "lastName": "doe"})
    assert status == 200
    assert set(model) == {"id", "name", "lastName"}
    assert (model["name"], model["lastName"]) == ("john", "doe")
    assert await _status(backend, "GET", f"/registrations/{model['id']}") == 404
    assert await (await backend.get("/registrations")).json() == []


async def test_start_uses_the_business_key(backend: Client) -> None:
    status, model = await _start(backend, {"name": "john", "id": "ignored"}, businessKey="john-1")
    assert (status, model) == (200, {"id": "john-1", "name": "john"})


async def test_start_assigns_distinct_ids(backend: Client) -> None:
    ids = {(await _start(backend, {"name": "john"}))[1]["id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"name": "jane", "age": 17},
            409,
            {"error": "underage", "message": "registrant must be 18 or older"},
        ),
        ({"name": "jane", "age": "old"}, 400, {"message": "age must be a number"}),
        ([1, 2], 400, {"message": "body must be a JSON object"}),
        ("text", 400, {"message": "body must be a JSON object"}),
    ],
)
async def test_start_refusals(backend: Client, body: Any, status: int, expected: Any) -> None:
    assert await _start(backend, body, businessKey="k") == (status, expected)
    assert await _status(backend, "GET", "/registrations/k") == 404


async def test_start_with_invalid_json_is_400(backend: Client) -> None:
    response = await backend.post("/registrations", data=b"{not json")
    assert response.status == 400
    assert "message" in await response.json()


async def test_start_crash_is_an_execution_error(backend: Client) -> None:
    status, body = await _start(backend, {"name": "crash"}, businessKey="c1")
    assert status == 500
    assert set(body) == {"id", "failedNodeId", "message"}
    assert body["id"] == "c1"
    assert await _status(backend, "GET", "/registrations/c1") == 404


async def test_adult_completes(backend: Client) -> None:
    assert (await _start(backend, {"name": "jane", "age": 18}))[0] == 200


async def test_duplicate_business_key_of_active_instance_is_409(backend: Client) -> None:
    await _start(backend, {"name": "john", "approval": True}, businessKey="dup")
    status, body = await _start(backend, {"name": "john"}, businessKey="dup")
    assert (status, body) == (409, {"message": "instance with id dup exists"})


async def test_completed_business_key_can_be_reused(backend: Client) -> None:
    await _start(backend, {"name": "john"}, businessKey="again")
    assert (await _start(backend, {"name": "john"}, businessKey="again"))[0] == 200


# --- the approval user task ---


async def _open_approval(backend: Client, key: str = "r1") -> str:
    status, model = await _start(backend, {"name": "john", "approval": True}, businessKey=key)
    assert (status, model) == (200, {"id": key, "name": "john", "approval": True})
    tasks = await (await backend.get(f"/registrations/{key}/tasks")).json()
    assert len(tasks) == 1
    assert tasks[0]["name"] == "approval"
    assert tasks[0]["reference"] == f"/approval/{tasks[0]['id']}"
    assert tasks[0]["formLink"]
    return str(tasks[0]["id"])


async def test_approval_task_keeps_the_instance_active(backend: Client) -> None:
    await _open_approval(backend)
    listed = await (await backend.get("/registrations")).json()
    assert listed == [{"id": "r1", "name": "john", "approval": True}]
    got = await (await backend.get("/registrations/r1")).json()
    assert got == {"id": "r1", "name": "john", "approval": True}


@pytest.mark.parametrize("query", [{}, {"phase": "complete"}])
async def test_completing_the_task_completes_the_instance(
    backend: Client, query: dict[str, str]
) -> None:
    task_id = await _open_approval(backend)
    response = await backend.post(
        f"/registrations/r1/approval/{task_id}", json={"approved": True}, params=query
    )
    assert response.status == 200
    assert await response.json() == {
        "id": "r1",
        "name": "john",
        "approval": True,
        "approved": True,
    }
    assert await _status(backend, "GET", "/registrations/r1") == 404


async def test_completing_the_task_without_a_body(backend: Client) -> None:
    task_id = await _open_approval(backend)
    response = await backend.post(f"/registrations/r1/approval/{task_id}")
    assert response.status == 200


async def test_unsupported_task_phase_is_400(backend: Client) -> None:
    task_id = await _open_approval(backend)
    response = await backend.post(f"/registrations/r1/approval/{task_id}?phase=claim", json={})
    assert response.status == 400
    assert await _status(backend, "GET", "/registrations/r1") == 200


# --- signals, variables, abort ---


async def test_signals_are_recorded_and_keep_the_instance_active(backend: Client) -> None:
    await _open_approval(backend)
    for name in ("reminder", "escalate"):
        response = await backend.post(f"/registrations/r1/{name}", json={})
        assert response.status == 200
    model = await (await backend.get("/registrations/r1")).json()
    assert model["signals"] == ["reminder", "escalate"]


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("PUT", {"id": "r1", "name": "jack"}),
        ("PATCH", {"id": "r1", "name": "jack", "approval": True}),
    ],
)
async def test_variables_update(backend: Client, method: str, expected: Any) -> None:
    await _open_approval(backend)
    response = await backend.request(method, "/registrations/r1", json={"name": "jack", "id": "x"})
    assert (response.status, await response.json()) == (200, expected)
    assert await (await backend.get("/registrations/r1")).json() == expected


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_variables_update_needs_an_object(backend: Client, method: str) -> None:
    await _open_approval(backend)
    response = await backend.request(method, "/registrations/r1", json=[1])
    assert response.status == 400


async def test_delete_aborts_and_removes(backend: Client) -> None:
    await _open_approval(backend)
    response = await backend.delete("/registrations/r1")
    assert (response.status, await response.json()) == (
        200,
        {"id": "r1", "name": "john", "approval": True},
    )
    assert await _status(backend, "GET", "/registrations/r1") == 404


# --- not found ---


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/registrations/nope"),
        ("GET", "/registrations/nope/tasks"),
        ("PUT", "/registrations/nope"),
        ("PATCH", "/registrations/nope"),
        ("DELETE", "/registrations/nope"),
        ("POST", "/registrations/nope/reminder"),
        ("POST", "/registrations/nope/approval/t1"),
    ],
)
async def test_unknown_instance_is_404(backend: Client, method: str, path: str) -> None:
    response = await backend.request(method, path, json={"name": "x"})
    assert response.status == 404
    assert "nope" in (await response.json())["message"]


async def test_unknown_task_is_404(backend: Client) -> None:
    await _open_approval(backend)
    response = await backend.post("/registrations/r1/approval/not-a-task", json={})
    assert response.status == 404
    assert await _status(backend, "GET", "/registrations/r1") == 200


# --- delay ---


async def test_delay_holds_the_answer(backend: Client) -> None:
    loop = asyncio.get_running_loop()
    began = loop.time()
    status, _ = await _start(backend, {"name": "john"}, delay="0.2")
    assert status == 200
    assert loop.time() - began >= 0.2


@pytest.mark.parametrize("delay", ["soon", "-1", "nan", "inf"])
async def test_invalid_delay_is_400(backend: Client, delay: str) -> None:
    assert await _status(backend, "GET", f"/registrations?delay={delay}") == 400


# --- the callback receiver ---


async def test_receiver_records_the_request(
    receiver: CallbackReceiver, receiver_client: Client
) -> None:
    response = await receiver_client.post(
        "/hooks/done?token=abc",
        json={"id": "r1"},
        headers={"X-ATK-Status": "Completed", "X-ATK-Job": "j1"},
    )
    assert response.status == 200
    got = await receiver.next()
    assert (got.method, got.path, got.query) == ("POST", "/hooks/done", {"token": "abc"})
    assert got.headers["x-atk-status"] == "Completed"
    assert got.headers["X-ATK-Job"] == "j1"
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.json() == {"id": "r1"}
    assert receiver.received == [got]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET"])
async def test_receiver_answers_any_method(
    receiver: CallbackReceiver, receiver_client: Client, method: str
) -> None:
    assert (await receiver_client.request(method, "/")).status == 200
    assert (await receiver.next()).method == method


async def test_receiver_answers_with_queued_statuses_then_200(
    receiver: CallbackReceiver, receiver_client: Client
) -> None:
    receiver.respond_with = [500, 401]
    statuses = [(await receiver_client.post("/cb", data=b"x")).status for _ in range(3)]
    assert statuses == [500, 401, 200]
    assert [(await receiver.next()).body for _ in range(3)] == [b"x"] * 3
    assert len(receiver.received) == 3


async def test_receiver_takes_statuses_at_construction(aiohttp_client: AiohttpClient) -> None:
    receiver = CallbackReceiver(respond_with=[503])
    client = await aiohttp_client(receiver.app)
    assert [(await client.post("/")).status for _ in range(2)] == [503, 200]


async def test_receiver_next_waits_for_a_later_request(
    receiver: CallbackReceiver, receiver_client: Client
) -> None:
    waiting = asyncio.create_task(receiver.next())
    await asyncio.sleep(0)
    assert not waiting.done()
    await receiver_client.post("/late")
    assert (await waiting).path == "/late"


async def test_receiver_next_times_out_when_nothing_arrives(
    receiver: CallbackReceiver,
) -> None:
    with pytest.raises(asyncio.TimeoutError):
        await receiver.next(timeout=0.01)
