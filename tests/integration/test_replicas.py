"""Several replicas, one truth: real proxy processes on their own ports sharing one real
redis-server (AOF, fsync always), killed with SIGKILL, and a Redis that restarts or goes
away for a while. Every 202 gets an outcome, visible from any replica, and every callback
arrives at least once."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from atkproxy.steps import INTERRUPTED

from ..conftest import RedisServer
from .conftest import ServerFactory, start_app
from .processes import free_port, kill, start_proxy, wait_healthy
from .support import ASYNC, Echo

TERMINAL = {"finished", "delivered", "dead"}
LEASE = 1.0


@dataclass
class Fleet:
    """Proxy processes on their own ports with one configuration (one store)."""

    config: list[str]
    ports: list[int] = field(default_factory=list)
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)

    def base(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    async def start(self, session: aiohttp.ClientSession, count: int, *more: str) -> None:
        for _ in range(count):
            port = free_port()
            self.ports.append(port)
            defines = (f"listen.port={port}", *self.config, *more)
            self.processes.append(await start_proxy(*defines))
        for n in range(len(self.ports) - count, len(self.ports)):
            await wait_healthy(session, f"{self.base(n)}/_atk/health")

    async def kill_all(self) -> None:
        for process in self.processes:
            await kill(process)


@asynccontextmanager
async def fleet(
    session: aiohttp.ClientSession, count: int, store: str, upstream: str, *more: str
) -> AsyncIterator[Fleet]:
    config = [
        "listen.host=127.0.0.1", f"upstream.url={upstream}", f"store.url={store}",
        f"store.lease={LEASE}s", "store.poll=50ms", "callback.destinations.allow=[127.0.0.1/32]",
        "logging.level=warning", *more,
    ]  # fmt: skip
    replicas = Fleet(config)
    try:
        await replicas.start(session, count)
        yield replicas
    finally:
        await replicas.kill_all()


@dataclass
class Callback:
    job: str
    attempt: str
    status: str
    at: float  # time.monotonic() of its arrival


class Receiver:
    """Records every callback it gets, duplicates included."""

    def __init__(self) -> None:
        self.got: list[Callback] = []
        self.arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_post("/cb", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        h = request.headers
        self.got.append(Callback(h["X-ATK-Job"], h["X-ATK-Attempt"], h["X-ATK-Status"],
                                 time.monotonic()))  # fmt: skip
        self.arrived.set()
        return web.Response()

    async def wait_for(self, jobs: list[str], deadline: float = 60) -> None:
        async with asyncio.timeout(deadline):
            while set(jobs) - {c.job for c in self.got}:
                self.arrived.clear()
                await self.arrived.wait()

    def report(self, jobs: list[str]) -> Counter[str]:
        """Callbacks per job, one at least for each of `jobs`; prints the duplicates
        (delivery is at least once: they are allowed, and counted)."""
        received = Counter(c.job for c in self.got)
        duplicates = {job: n for job, n in received.items() if n > 1}
        print(f"accepted={len(jobs)} callbacks={len(self.got)} duplicates={duplicates}")
        assert [job for job in jobs if job not in received] == []
        return received


async def accept(
    session: aiohttp.ClientSession, base: str, path: str, callback: str | None = None
) -> str:
    headers = {**ASYNC, **({"X-ATK-Callback": callback} if callback else {})}
    async with session.post(f"{base}{path}", json={}, headers=headers) as r:
        assert r.status == 202, await r.text()
        assert r.headers["Location"] == f"/_atk/jobs/{r.headers['X-ATK-Job']}"
        return r.headers["X-ATK-Job"]


async def wait_state(
    session: aiohttp.ClientSession, base: str, job: str, states: set[str], deadline: float = 60
) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while True:
        async with session.get(f"{base}/_atk/jobs/{job}") as r:
            view: dict[str, Any] = await r.json() if r.status == 200 else {}
        if view.get("state") in states:
            return view
        assert time.monotonic() < end, f"job {job} still {view.get('state')}"
        await asyncio.sleep(0.05)


async def wait_status(
    session: aiohttp.ClientSession, url: str, status: int, deadline: float = 20
) -> None:
    end = time.monotonic() + deadline
    while True:
        async with session.get(url) as r:
            if r.status == status:
                return
        assert time.monotonic() < end, f"{url} still answers {r.status}"
        await asyncio.sleep(0.05)


async def test_a_job_accepted_by_one_replica_is_answered_by_the_others(
    redis_url: str, aiohttp_server: ServerFactory
) -> None:
    upstream = await start_app(aiohttp_server, Echo().app)
    async with aiohttp.ClientSession() as session, fleet(session, 3, redis_url, upstream) as f:
        job = await accept(session, f.base(0), "/orders/7")
        for n in (1, 2):
            view = await wait_state(session, f.base(n), job, TERMINAL)
            assert (view["job"], view["status"], view["path"]) == (job, "Completed", "/orders/7")
            async with session.get(f"{f.base(n)}/_atk/jobs/{job}/result") as r:
                assert r.status == 200
                assert (await r.json())["path_qs"] == "/orders/7"  # the upstream's echo
        async with session.get(f"{f.base(1)}/_atk/jobs/no-such-job") as r:
            assert r.status == 404


async def test_a_replica_killed_with_jobs_running_and_queued_the_others_finish_them(
    redis_url: str, aiohttp_server: ServerFactory
) -> None:
    echo, receiver = Echo(), Receiver()
    upstream = await start_app(aiohttp_server, echo.app)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    async with (
        aiohttp.ClientSession() as session,
        fleet(session, 3, redis_url, upstream, "async.max_inflight=2") as f,
    ):
        jobs = [await accept(session, f.base(0), f"/hold/{n}", callback) for n in range(10)]
        # two run on replica 0 (accepted with a free slot), two on each other one; four wait
        for _ in range(6):
            await asyncio.wait_for(echo.arrived.get(), 20)
        killed_at = time.monotonic()
        await kill(f.processes[0])
        echo.release.set()
        views = [await wait_state(session, f.base(1), job, {"delivered"}) for job in jobs]
        assert [(await wait_state(session, f.base(2), job, TERMINAL))["state"]
                for job in jobs] == ["delivered"] * 10  # fmt: skip
    # the dead replica's two calls: nobody knows whether the upstream did them (the route
    # is not replay_safe), so they end Failed, after their lease expired and not long after
    interrupted = {v["job"] for v in views if v["reason"] == INTERRUPTED}
    assert len(interrupted) == 2
    assert {v["status"] for v in views if v["job"] not in interrupted} == {"Completed"}
    for c in receiver.got:
        if c.job in interrupted:
            assert c.status == "Failed"
            assert LEASE / 2 <= c.at - killed_at <= LEASE + 5
    receiver.report(jobs)


async def test_a_stopping_replica_hands_its_jobs_on_at_once_not_after_the_lease(
    redis_url: str, aiohttp_server: ServerFactory
) -> None:
    echo, receiver = Echo(), Receiver()
    upstream = await start_app(aiohttp_server, echo.app)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    more = ("store.lease=60s", "async.drain_timeout=100ms")  # the later define wins
    async with (
        aiohttp.ClientSession() as session,
        fleet(session, 2, redis_url, upstream, *more) as f,
    ):
        job = await accept(session, f.base(0), "/hold/1", callback)
        await asyncio.wait_for(echo.arrived.get(), 20)
        stopped_at = time.monotonic()
        f.processes[0].send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(f.processes[0].wait(), 20) == 0
        view = await wait_state(session, f.base(1), job, {"delivered"}, deadline=20)
    assert (view["status"], view["reason"]) == ("Failed", INTERRUPTED)
    assert receiver.got[0].at - stopped_at < 20  # far less than the 60 s lease


@dataclass
class Burst:
    """Clients sending async requests to the replicas in turn until `wanted` were answered
    202; a 503 (the store is away) is not a promise and is not counted."""

    bases: list[str]
    callback: str
    wanted: int
    accepted: list[str] = field(default_factory=list)
    refused: list[tuple[int, str | None]] = field(default_factory=list)  # status, Retry-After
    refusal: asyncio.Event = field(default_factory=asyncio.Event)
    progress: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, session: aiohttp.ClientSession, n: int) -> None:
        headers = {**ASYNC, "X-ATK-Callback": self.callback}
        sent = 0
        while len(self.accepted) < self.wanted:
            base = self.bases[(n + sent) % len(self.bases)]
            sent += 1
            async with session.post(f"{base}/orders/{n}", json={}, headers=headers) as r:
                if r.status == 202:
                    self.accepted.append(r.headers["X-ATK-Job"])
                    self.progress.set()
                    continue
                self.refused.append((r.status, r.headers.get("Retry-After")))
                self.refusal.set()
            await asyncio.sleep(0.02)  # as a client told to retry would, if not so patient

    async def until(self, count: int) -> None:
        async with asyncio.timeout(60):
            while len(self.accepted) < count:
                self.progress.clear()
                await self.progress.wait()


async def test_redis_restarted_mid_run_loses_nothing_acknowledged(
    own_redis_server: RedisServer, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver()
    upstream = await start_app(aiohttp_server, Echo().app)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    store = own_redis_server.url
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=8)) as session,
        fleet(session, 2, store, upstream, "callback.retry.schedule=[0s, 200ms]") as f,
    ):
        burst = Burst([f.base(0), f.base(1)], callback, wanted=400)
        clients = [asyncio.create_task(burst.client(session, n)) for n in range(8)]
        await burst.until(150)
        own_redis_server.stop()  # SIGKILL: Redis writes nothing at exit
        async with asyncio.timeout(20):
            await burst.refusal.wait()
        await asyncio.to_thread(own_redis_server.start)  # same port, same directory (AOF)
        await asyncio.gather(*clients)
        for n, job in enumerate(burst.accepted):
            await wait_state(session, f.base(n % 2), job, TERMINAL)
        await receiver.wait_for(burst.accepted)
    assert {status for status, _ in burst.refused} == {503}
    assert {retry for _, retry in burst.refused} == {"1"}
    receiver.report(burst.accepted)


async def test_redis_away_for_a_while_503s_then_everything_carries_on(
    own_redis_server: RedisServer, aiohttp_server: ServerFactory
) -> None:
    echo, receiver = Echo(), Receiver()
    upstream = await start_app(aiohttp_server, echo.app)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    async with (
        aiohttp.ClientSession() as session,
        fleet(session, 2, own_redis_server.url, upstream) as f,
    ):
        held = await accept(session, f.base(0), "/hold/1", callback)  # in flight meanwhile
        await asyncio.wait_for(echo.arrived.get(), 20)
        own_redis_server.stop()
        for n in (0, 1):
            async with session.post(f"{f.base(n)}/orders", json={}, headers=ASYNC) as r:
                assert (r.status, r.headers["Retry-After"]) == (503, "1")
                assert "job store unavailable" in (await r.json())["error"]
            await wait_status(session, f"{f.base(n)}/_atk/ready", 503)
            async with session.get(f"{f.base(n)}/_atk/jobs/{held}") as r:
                assert r.status == 503
        echo.release.set()  # the upstream answers while its job cannot be saved
        await asyncio.to_thread(own_redis_server.start)
        for n in (0, 1):
            await wait_status(session, f"{f.base(n)}/_atk/ready", 200)
        jobs = [await accept(session, f.base(n % 2), f"/orders/{n}", callback) for n in range(4)]
        views = [await wait_state(session, f.base(1), job, {"delivered"}) for job in jobs]
        assert {v["status"] for v in views} == {"Completed"}
        outcome = await wait_state(session, f.base(1), held, {"delivered"})
        await receiver.wait_for([held, *jobs])
    print(f"the job in flight during the outage: {outcome['status']} ({outcome['reason']})")
    receiver.report([held, *jobs])


async def test_redis_away_longer_than_the_lease_the_holder_keeps_its_job(
    own_redis_server: RedisServer, aiohttp_server: ServerFactory
) -> None:
    """Every lease runs out while nobody can renew it: when Redis is back the holder, alive,
    renews before the other replica may claim, so the answer it got meanwhile is the job's
    result (not `interrupted`). The lease is long beside the claim loop's retry, as the
    default 30 s is: a replica that claimed at once would take the job most of the time."""
    echo, receiver = Echo(), Receiver()
    upstream = await start_app(aiohttp_server, echo.app)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    lease = 12.0
    async with (
        aiohttp.ClientSession() as session,
        fleet(session, 2, own_redis_server.url, upstream, f"store.lease={lease}s") as f,
    ):
        held = await accept(session, f.base(0), "/hold/1", callback)
        await asyncio.wait_for(echo.arrived.get(), 20)
        own_redis_server.stop()
        echo.release.set()  # answered while Redis is away; saving the result waits
        await asyncio.sleep(lease + 1)  # until the lease has run out: nothing to poll meanwhile
        await asyncio.to_thread(own_redis_server.start)
        view = await wait_state(session, f.base(1), held, {"delivered"})
    assert (view["status"], view["reason"]) == ("Completed", None)
    assert len(echo.seen) == 1


async def test_an_idempotency_key_gives_one_job_whichever_replicas_it_reaches(
    redis_url: str, aiohttp_server: ServerFactory
) -> None:
    echo = Echo()
    upstream = await start_app(aiohttp_server, echo.app)
    async with aiohttp.ClientSession() as session, fleet(session, 3, redis_url, upstream) as f:

        async def send(n: int, body: dict[str, Any]) -> tuple[int, str | None]:
            headers = {**ASYNC, "Idempotency-Key": "order-42"}
            async with session.post(f"{f.base(n)}/orders", json=body, headers=headers) as r:
                return r.status, r.headers.get("X-ATK-Job")

        both = await asyncio.gather(send(0, {"a": 1}), send(1, {"a": 1}))  # at the same time
        again = await send(2, {"a": 1})
        other = await send(1, {"a": 2})
        job = both[0][1]
        assert [both[0], both[1], again] == [(202, job)] * 3
        assert other == (422, None)
        await wait_state(session, f.base(2), str(job), TERMINAL)
    assert [seen["path_qs"] for seen in echo.seen] == ["/orders"]  # called once


async def test_the_backlog_a_replica_admits_against_is_the_shared_stores(
    redis_url: str, aiohttp_server: ServerFactory
) -> None:
    """Jobs one replica accepted and another ran do not fill the first one's queue."""
    echo = Echo()
    upstream = await start_app(aiohttp_server, echo.app)
    async with aiohttp.ClientSession() as session, fleet(session, 1, redis_url, upstream) as f:
        await f.start(session, 1, "async.max_inflight=1", "async.max_queue=2")  # replica 1
        await accept(session, f.base(1), "/hold/0")  # its only upstream slot stays busy
        await asyncio.wait_for(echo.arrived.get(), 20)
        for n in range(5):  # each one waits in the store until replica 0 runs it
            job = await accept_soon(session, f.base(1), f"/orders/{n}")
            await wait_state(session, f.base(1), job, TERMINAL)
        echo.release.set()


async def accept_soon(
    session: aiohttp.ClientSession, base: str, path: str, deadline: float = 5
) -> str:
    """A 202 within `deadline` s: the replica counts the store's backlog once per poll, so
    a 503 may come while the count is not yet current, not after."""
    end = time.monotonic() + deadline
    while True:
        async with session.post(f"{base}{path}", json={}, headers=ASYNC) as r:
            if r.status == 202:
                return r.headers["X-ATK-Job"]
            assert (r.status, time.monotonic() < end) == (503, True), await r.text()
        await asyncio.sleep(0.05)
