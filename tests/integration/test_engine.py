"""The job engine keeps every promise a 202 makes: retries, dead letter, re-drive, store
faults that heal, a backend that starts late, probes that wait for an answer, idempotency.
Real servers on 127.0.0.1; waits are events or polls with a deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from atkproxy.jobs import Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.keys import AUTH, UPSTREAM
from atkproxy.store.memory import MemoryStore

from .conftest import ProxyFactory, Receiver, ServerFactory, start_app
from .support import ASYNC, Echo, FailingStore, idle, job_view, wait_job

Client = TestClient[Any, Any]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def submit(proxy: Client, path: str = "/x", callback: str | None = None, **kw: Any) -> str:
    headers = {**ASYNC, **({"X-ATK-Callback": callback} if callback else {})}
    headers.update(kw.pop("headers", {}))
    async with proxy.post(path, json=kw.pop("json", {"n": 1}), headers=headers) as r:
        assert r.status == 202, await r.text()
        location: str = r.headers["Location"]
        return location


async def until(check: Any, deadline: float = 10.0) -> Any:
    """Poll `check()` (async) until it returns something truthy, failing after `deadline`."""
    end = time.monotonic() + deadline
    while not (value := await check()):
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)
    return value


def retry(*schedule: str, max_age: str = "1h", stop_on: list[int] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {"schedule": list(schedule), "max_age": max_age}
    if stop_on is not None:
        policy["stop_on"] = stop_on
    return {"callback": {"retry": policy}}


# -- callback retries ---------------------------------------------------------------------


async def test_receiver_down_then_up_gets_every_callback_with_exact_attempt_numbers(
    upstream: str, make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    port = free_port()
    callback = f"http://127.0.0.1:{port}/cb"
    schedule = ["0s", "50ms", "100ms", "200ms"] + ["300ms"] * 20  # about 7 s
    proxy = await make_proxy(upstream, retry(*schedule), automatiko=False)
    locations = [await submit(proxy, f"/orders/{n}", callback) for n in range(10)]

    async def two_attempts_each() -> bool:
        views = [await job_view(proxy, loc) for loc in locations]
        return all(len(v["callback"]["attempts"]) >= 2 for v in views)

    await until(two_attempts_each)  # the receiver is down: refused, retried
    receiver = Receiver()
    await aiohttp_server(receiver.app, port=port)
    views = [await wait_job(proxy, loc, ("delivered",)) for loc in locations]

    by_job = {r.headers["X-ATK-Job"]: r for r in receiver.received}
    assert len(receiver.received) == len(by_job) == 10  # each exactly once
    for view in views:
        attempts = view["callback"]["attempts"]
        assert [a["attempt"] for a in attempts] == list(range(1, len(attempts) + 1))
        assert all(a["error"].startswith("callback failed") for a in attempts[:-1])
        assert attempts[-1]["status"] == 200
        assert by_job[view["job"]].headers["X-ATK-Attempt"] == str(len(attempts))


async def test_503_with_retry_after_is_not_retried_earlier(
    upstream: str, make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    arrivals: list[float] = []

    async def busy_then_ok(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return web.Response(status=503, headers={"Retry-After": "1"})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/cb", busy_then_ok)
    callback = await start_app(aiohttp_server, app) + "/cb"
    proxy = await make_proxy(upstream, retry("0s", "10ms", "5s"), automatiko=False)

    view = await wait_job(proxy, await submit(proxy, "/x", callback), ("delivered",))

    assert [a["status"] for a in view["callback"]["attempts"]] == [503, 204]
    assert arrivals[1] - arrivals[0] >= 1.0


async def test_retry_after_is_bounded_by_the_longest_step(
    upstream: str, make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    answers = [web.Response(status=429, headers={"Retry-After": "3600"}), web.Response()]

    async def later(request: web.Request) -> web.Response:
        return answers.pop(0)

    app = web.Application()
    app.router.add_post("/cb", later)
    callback = await start_app(aiohttp_server, app) + "/cb"
    proxy = await make_proxy(upstream, retry("0s", "50ms"), automatiko=False)

    view = await wait_job(proxy, await submit(proxy, "/x", callback), ("delivered",))

    assert [a["status"] for a in view["callback"]["attempts"]] == [429, 200]


@pytest.mark.parametrize(("status", "stop_on"), [(410, None), (422, [422])])
async def test_gone_or_a_stop_status_is_dead_after_one_attempt(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory, status: int, stop_on: Any
) -> None:
    receiver.respond_with = [status, 200]
    config = retry("0s", "10ms", "10ms", stop_on=stop_on)
    proxy = await make_proxy(upstream, config, automatiko=False)

    view = await wait_job(proxy, await submit(proxy, "/x", receiver.url))

    assert view["state"] == "dead"
    assert [a["status"] for a in view["callback"]["attempts"]] == [status]
    assert view["reason"] == f"the receiver answered {status}: delivery stopped"
    assert len(receiver.received) == 1


async def test_exhausted_schedule_is_dead_then_redelivered_one_and_in_bulk(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    receiver.respond_with = [500] * 9
    proxy = await make_proxy(upstream, retry("0s", "10ms", "10ms"), automatiko=False)
    locations = [await submit(proxy, f"/o/{n}", receiver.url) for n in range(3)]
    dead = [await wait_job(proxy, loc, ("dead",)) for loc in locations]
    assert all(len(v["callback"]["attempts"]) == 3 for v in dead)
    assert dead[0]["reason"].startswith("callback retries exhausted after 3 attempts")

    async with proxy.get("/_atk/jobs?state=dead&limit=2") as r:
        page = await r.json()
    async with proxy.get(f"/_atk/jobs?state=dead&limit=2&after={page['next']}") as r:
        rest = await r.json()
    listed = [v["job"] for v in page["jobs"] + rest["jobs"]]
    assert sorted(listed) == sorted(v["job"] for v in dead) and rest["next"] is None

    async with proxy.post(f"{locations[0]}/redeliver") as r:
        assert (r.status, (await r.json())["redelivered"]) == (202, 1)
    first = await wait_job(proxy, locations[0], ("delivered",))
    assert [a["attempt"] for a in first["callback"]["attempts"]] == [1, 2, 3, 4]
    assert receiver.received[-1].headers["X-ATK-Attempt"] == "4"

    async with proxy.post("/_atk/jobs/redeliver?state=dead&limit=10") as r:
        assert (r.status, await r.json()) == (202, {"redelivered": 2, "state": "dead"})
    for location in locations[1:]:
        assert (await wait_job(proxy, location, ("delivered",)))["state"] == "delivered"
    async with proxy.post(f"{locations[0]}/redeliver") as r:  # delivered may go again
        assert r.status == 202


async def test_redeliver_of_a_job_that_is_not_dead_is_409(
    upstream: str, echo: Echo, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    location = await submit(proxy, "/hold/1", receiver.url)
    await echo.arrived.get()
    async with proxy.post(f"{location}/redeliver") as r:
        assert r.status == 409
        assert "only a dead or delivered job" in (await r.json())["error"]
    async with proxy.post("/_atk/jobs/nope/redeliver") as r:
        assert r.status == 404
    async with proxy.post("/_atk/jobs/redeliver?state=running") as r:
        assert r.status == 400
    echo.release.set()
    await idle(proxy)


@pytest.mark.parametrize(
    ("query", "message"),
    [("state=nope", "state must be one of"), ("limit=0", "limit must be"),
     ("limit=x", "limit must be"), ("after=garbage", "cursor")],
)  # fmt: skip
async def test_job_list_refuses_bad_parameters(
    upstream: str, make_proxy: ProxyFactory, query: str, message: str
) -> None:
    proxy = await make_proxy(upstream, automatiko=False)
    async with proxy.get(f"/_atk/jobs?{query}") as r:
        assert r.status == 400
        assert message in (await r.json())["error"]


async def test_management_token_guards_the_job_list_and_redelivery(
    upstream: str, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, {"management": {"token": "op-t0ken"}}, automatiko=False)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "op-t0ken"}):
        async with proxy.get("/_atk/jobs", headers=headers) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == "Bearer"
        async with proxy.post("/_atk/jobs/redeliver", headers=headers) as r:
            assert r.status == 401
    good = {"Authorization": "Bearer op-t0ken"}
    async with proxy.get("/_atk/jobs", headers=good) as r:
        assert (r.status, await r.json()) == (200, {"jobs": [], "next": None})


async def test_a_hanging_receiver_does_not_delay_a_job_without_callback(
    upstream: str, make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    arrived, never = asyncio.Event(), asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        arrived.set()
        await never.wait()
        return web.Response()

    app = web.Application()
    app.router.add_post("/cb", hang)
    callback = await start_app(aiohttp_server, app) + "/cb"
    config = {"async": {"max_inflight": 1}, "callback": {"timeout": "30s", "max_inflight": 1}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    slow = await submit(proxy, "/a", callback)
    await asyncio.wait_for(arrived.wait(), 10)

    plain = await wait_job(proxy, await submit(proxy, "/b"), deadline=5)

    assert plain["status"] == "Completed"
    [attempt] = (await job_view(proxy, slow))["callback"]["attempts"]
    assert attempt["error"] == "in flight"  # the slow delivery is still hanging
    never.set()


class CountingStore(MemoryStore):
    """Records the state of each save and the states of each claimed job."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[JobState] = []
        self.claimed: list[JobState] = []

    async def update(self, job: Job, owner: str | None) -> None:
        self.saved.append(job.state)
        await super().update(job, owner)

    async def claim(self, *args: Any) -> list[Job]:
        jobs = await super().claim(*args)
        self.claimed += [job.state for job in jobs]
        return jobs


async def test_a_finished_job_goes_on_to_its_callback_without_a_claim(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    store = CountingStore()
    proxy = await make_proxy(upstream, retry("0s", "1s"), automatiko=False, store=store)

    view = await wait_job(proxy, await submit(proxy, "/a", receiver.url), ("delivered",))

    assert [a["attempt"] for a in view["callback"]["attempts"]] == [1]
    # running; finished with the lease kept and attempt 1 recorded pending; delivered
    assert store.saved == [JobState.RUNNING, JobState.DELIVERING, JobState.DELIVERED]
    assert JobState.DELIVERING not in store.claimed


async def test_a_queued_job_is_claimed_ahead_while_the_upstream_slot_is_busy(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    store = CountingStore()
    config = {"async": {"max_inflight": 1}}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)
    first = await submit(proxy, "/hold/1")  # takes the one upstream slot
    await echo.arrived.get()
    second = await submit(proxy, "/hold/2")

    # claimed (leased) while the first still runs: it starts the moment the slot frees
    await until(lambda: asyncio.sleep(0, JobState.ACCEPTED in store.claimed))
    assert echo.arrived.empty()
    echo.release.set()
    for location in (first, second):
        assert (await wait_job(proxy, location))["status"] == "Completed"


class ClaimsAgain(CountingStore):
    """Hands the first job it hands out again at the next claim, as a store does once that
    job's lease has lapsed."""

    def __init__(self) -> None:
        super().__init__()
        self.again: list[Job] = []
        self.handed_again = False

    async def claim(self, *args: Any) -> list[Job]:
        jobs = await super().claim(*args)
        if self.again and not self.handed_again:
            self.handed_again = True
            return [*jobs, *self.again]
        if not self.again:
            self.again = jobs[:1]
        return jobs


async def test_a_job_claimed_ahead_and_claimed_again_runs_once(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    store = ClaimsAgain()
    config = {"async": {"max_inflight": 2}}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)
    running = [await submit(proxy, f"/hold/{n}") for n in (1, 2)]  # both upstream slots
    for _ in running:
        await echo.arrived.get()
    third = await submit(proxy, "/hold/3")  # claimed ahead, then handed out again

    await until(lambda: asyncio.sleep(0, store.handed_again))
    echo.release.set()
    for location in (*running, third):
        await wait_job(proxy, location)
    await idle(proxy)

    assert [seen["path_qs"] for seen in echo.seen].count("/hold/3") == 1


# -- the upstream: late start, probes --------------------------------------------------------


async def test_a_backend_that_starts_after_the_proxy_completes_the_jobs(
    echo: Echo, receiver: Receiver, make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    port = free_port()
    config = {"upstream": {"retry": {"schedule": ["20ms", "50ms"], "max_age": "1m"}}}
    proxy = await make_proxy(f"http://127.0.0.1:{port}", config, automatiko=False)
    locations = [await submit(proxy, f"/late/{n}", receiver.url) for n in range(3)]

    async def tried_twice() -> bool:
        views = [await job_view(proxy, loc) for loc in locations]
        return all(v["upstream_tries"] >= 2 for v in views)

    await until(tried_twice)
    waiting = [await job_view(proxy, loc) for loc in locations]
    assert {view["state"] for view in waiting} == {"accepted"}
    assert all(view["reason"].startswith("upstream not reached") for view in waiting)
    await aiohttp_server(echo.app, port=port)

    views = [await wait_job(proxy, loc, ("delivered",)) for loc in locations]

    assert {v["status"] for v in views} == {"Completed"}
    assert sorted(s["path_qs"] for s in echo.seen) == [f"/late/{n}" for n in range(3)]


class Probed:
    """An upstream whose POST answers 200 at once and whose status probe (GET) answers
    `probe_answers` in turn (0: drop the connection), then 200 (the instance is active)."""

    def __init__(self, probe_answers: list[int]) -> None:
        self.probe_answers = list(probe_answers)  # a copy: the test table is shared
        self.probes = 0
        self.app = web.Application()
        self.app.router.add_post("/orders", self.start)
        self.app.router.add_get("/orders/{id}", self.probe)

    async def start(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.query.get("businessKey")})

    async def probe(self, request: web.Request) -> web.Response:
        self.probes += 1
        status = self.probe_answers.pop(0) if self.probe_answers else 200
        if status == 0:
            assert request.transport is not None
            request.transport.close()
        return web.Response(status=status or 500)


PROBE_ROUTE = {"path": "/orders", "start": True,
               "id": [{"from": "assign", "inject": "query", "name": "businessKey"}]}  # fmt: skip
PROBE_RULE = {"status": ["2xx"], "probe": "/orders/{id}"}


@pytest.mark.parametrize(
    ("answers", "max_age", "status", "reason"),
    [
        ([0, 503, 0], "1m", "Active", None),  # no answer, then one: the probed status
        ([503] * 1000, "300ms", "Completed", "status probe unanswered"),  # never: fall back
    ],
    ids=["answered-later", "never-answered"],
)
async def test_a_probe_without_answer_is_asked_again_before_falling_back(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory,
    answers: list[int], max_age: str, status: str, reason: str | None,
) -> None:  # fmt: skip
    upstream = Probed(answers)
    config = {"async": {"routes": [PROBE_ROUTE]},
              "status": {"rules": [PROBE_RULE], "probe_max_age": max_age}}  # fmt: skip
    proxy = await make_proxy(await start_app(aiohttp_server, upstream.app), config,
                             automatiko=False)  # fmt: skip

    view = await wait_job(proxy, await submit(proxy, "/orders", json={"a": 1}))

    assert (view["status"], view["reason"]) == (status, reason)
    assert upstream.probes >= 4 if reason is None else upstream.probes >= 2


# -- store faults ---------------------------------------------------------------------------


async def test_a_store_that_fails_writes_for_a_while_heals_without_a_restart(
    upstream: str, echo: Echo, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    store = FailingStore()
    config = {"store": {"lease": "200ms"}, **retry("0s", "20ms")}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)
    locations = [await submit(proxy, f"/hold/{n}", receiver.url) for n in range(5)]
    for _ in locations:
        await echo.arrived.get()  # all five are running upstream
    store.failing = True
    async with proxy.get("/_atk/ready") as r:
        assert r.status == 503
        assert (await r.json())["error"].startswith("job store cannot take a write")
    echo.release.set()  # they answer; their saves fail, longer than the lease

    async def enough_failures() -> bool:
        return store.failures >= 25

    await until(enough_failures, deadline=20)
    store.failing = False
    views = [await wait_job(proxy, loc, ("delivered",), deadline=20) for loc in locations]

    assert {v["status"] for v in views} == {"Completed"}  # not "interrupted": nothing lost
    assert len(echo.seen) == 5  # each upstream call made once
    assert sorted(r.headers["X-ATK-Job"] for r in receiver.received) == sorted(
        v["job"] for v in views
    )

    async def ready() -> bool:
        async with proxy.get("/_atk/ready") as r:
            return r.status == 200

    await until(ready)


async def test_job_api_answers_503_json_while_the_store_fails(
    upstream: str, make_proxy: ProxyFactory
) -> None:
    class Broken(FailingStore):
        async def get(self, job_id: str) -> Any:
            raise OSError("disk I/O error")

    proxy = await make_proxy(upstream, automatiko=False, store=Broken())
    async with proxy.get("/_atk/jobs/any") as r:
        assert (r.status, r.content_type) == (503, "application/json")
        assert r.headers["Retry-After"] == "1"


# -- idempotency ----------------------------------------------------------------------------


async def test_an_idempotency_key_repeat_gets_the_first_202_and_runs_nothing(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, automatiko=True)
    headers = {**ASYNC, "Idempotency-Key": "k-1"}
    answers = []
    for _ in range(3):
        async with proxy.post("/registrations", json={"name": "ann"}, headers=headers) as r:
            answers.append((r.status, r.headers["X-ATK-Job"], await r.json()))
    await idle(proxy)

    assert answers[0][0] == 202 and answers.count(answers[0]) == 3
    assert answers[0][2]["name"] == "ann"
    assert [s["method"] for s in echo.seen].count("POST") == 1
    async with proxy.post("/registrations", json={"name": "bob"}, headers=headers) as r:
        assert r.status == 422
        assert "Idempotency-Key" in (await r.json())["error"]
    async with proxy.post("/other", json={"name": "ann"}, headers=headers) as r:
        assert r.status == 202 and r.headers["X-ATK-Job"] != answers[0][1]  # another path


# -- what the engine frees and gives back ----------------------------------------------------


async def test_on_behalf_values_are_freed_whenever_a_job_ends(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    receiver.respond_with = [200, 410]
    config = {"callback": {"auth": {"type": "on-behalf"}, "retry": {"schedule": ["0s"]}}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    auth = proxy.app[AUTH]  # type: ignore[index]
    creds = {"Authorization": "Bearer caller"}
    ended = [
        await submit(proxy, "/x", receiver.url, headers=creds),  # delivered
        await submit(proxy, "/y", receiver.url, headers=creds),  # dead (410)
        await submit(proxy, "/status/401", receiver.url, headers=creds),  # no callback owed
    ]
    states = [(await wait_job(proxy, loc, headers=creds))["state"] for loc in ended]

    assert sorted(states) == ["dead", "delivered", "finished"]
    assert (len(auth), auth.held_bytes) == (0, 0)


async def test_a_failed_accept_gives_its_queue_place_back(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    store = FailingStore()
    config = {"async": {"max_inflight": 1, "max_queue": 1}}
    proxy = await make_proxy(upstream, config, automatiko=False, store=store)
    store.failing = True
    for _ in range(3):  # each refused by the store: none may keep a place
        async with proxy.put("/hold/x", json={}, headers=ASYNC) as r:
            assert r.status == 503
    store.failing = False
    await submit(proxy, "/hold/1")  # takes the upstream slot
    await echo.arrived.get()
    await submit(proxy, "/hold/2")  # the one place in the queue
    async with proxy.put("/hold/3", json={}, headers=ASYNC) as r:
        assert r.status == 503  # now the queue is full
    echo.release.set()
    await idle(proxy)


async def test_an_injected_id_gets_a_body_of_the_right_length(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    route = {"path": "/orders", "start": True,
             "id": [{"from": "assign", "inject": "body", "name": "/orderId"}]}  # fmt: skip
    proxy = await make_proxy(upstream, {"async": {"routes": [route]}}, automatiko=False)
    body = b'{"item": "tea"}'
    headers = {**ASYNC, "Content-Type": "application/json"}
    async with proxy.post("/orders", data=body, headers=headers) as r:
        order_id = (await r.json())["orderId"]
    seen = await echo.arrived.get()

    sent = seen["body"].encode("latin-1")
    lengths = [v for k, v in seen["headers"] if k.lower() == "content-length"]
    assert lengths == [str(len(sent))] and len(sent) > len(body)
    assert order_id in seen["body"]


async def test_a_job_whose_upstream_had_answered_is_concluded_not_run_again(
    upstream: str, echo: Echo, make_proxy: ProxyFactory
) -> None:
    # what a process that died while probing the status leaves: running, the result saved,
    # the lease its own (expired)
    store = MemoryStore()
    result = UpstreamResult(200, [("Content-Type", "application/json")], b'{"ok": true}')
    left = Job(id="left", instance_id="i-1", method="POST", path_qs="/orders",
               request=UpstreamRequest("POST", "/orders", [], b"{}"), state=JobState.RUNNING,
               due_at=1.0, lease_owner="dead", lease_until=2.0).with_result(result)  # fmt: skip
    await store.add(left)
    proxy = await make_proxy(upstream, automatiko=False, store=store)

    view = await wait_job(proxy, "/_atk/jobs/left")

    assert (view["state"], view["status"], view["upstream"]) == (
        "finished", "Completed", {"status": 200, "error": None},
    )  # fmt: skip
    assert echo.seen == []  # concluded from the saved answer: the call is not made again


async def test_a_step_that_fails_unexpectedly_ends_the_job_with_the_reason(
    upstream: str, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(upstream, retry("0s"), automatiko=False)
    client = proxy.app[UPSTREAM]  # type: ignore[index]

    async def broken(*args: Any) -> Any:  # a bug in a step, injected: nothing plans for it
        raise RuntimeError("a bug")

    client.call = broken
    failed = await wait_job(proxy, await submit(proxy, "/x", receiver.url))
    del client.call  # the engine carries on with the next job
    fine = await wait_job(proxy, await submit(proxy, "/y"))

    assert (failed["state"], failed["status"]) == ("delivered", "Failed")
    assert failed["reason"] == "internal error: RuntimeError"
    callback = await receiver.next()
    assert callback.headers["X-ATK-Status"] == "Failed"
    assert callback.json()["error"] == "internal error: RuntimeError"
    assert fine["status"] == "Completed"
