"""A crash never loses an accepted job: real proxy processes on the SQLite store, killed
with SIGKILL at chosen and at random moments, and started again."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .conftest import ServerFactory, start_app
from .processes import free_port, kill, start_proxy, wait_healthy
from .support import ASYNC, Echo

TERMINAL = {"finished", "delivered", "dead"}


def defines(tmp_path: Path, port: int, upstream: str, *more: str) -> list[str]:
    return [
        f"listen.port={port}", "listen.host=127.0.0.1", f"upstream.url={upstream}",
        f"store.url=sqlite:///{tmp_path / 'jobs.db'}", "store.poll=50ms",
        "callback.destinations.allow=[127.0.0.1/32]", "logging.level=warning", *more,
    ]  # fmt: skip


class Receiver:
    """Records every callback; holds the first one until `release` is set, if asked to."""

    def __init__(self, hold_first: bool = False) -> None:
        self.got: list[tuple[str, str]] = []  # (job, attempt)
        self.first_arrived = asyncio.Event()
        self.release = asyncio.Event()
        if not hold_first:
            self.release.set()
        self.app = web.Application()
        self.app.router.add_post("/cb", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        self.got.append((request.headers["X-ATK-Job"], request.headers["X-ATK-Attempt"]))
        self.first_arrived.set()
        await self.release.wait()
        return web.Response()


async def test_kill_while_a_callback_is_in_flight_the_next_attempt_is_number_2(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver(hold_first=True)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    upstream, port = await start_app(aiohttp_server, Echo().app), free_port()
    config = defines(tmp_path, port, upstream, "callback.retry.schedule=[0s, 100ms, 1s]")
    base = f"http://127.0.0.1:{port}"
    first = await start_proxy(*config)
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, f"{base}/_atk/health")
        headers = {**ASYNC, "X-ATK-Callback": callback}
        async with session.post(f"{base}/orders", json={}, headers=headers) as r:
            job = r.headers["X-ATK-Job"]
        await asyncio.wait_for(receiver.first_arrived.wait(), 20)
        await kill(first)  # the receiver has the POST and has not answered it
        receiver.release.set()

        second = await start_proxy(*config)
        try:
            await wait_healthy(session, f"{base}/_atk/health")
            view = await wait_state(session, f"{base}/_atk/jobs/{job}", {"delivered"})
        finally:
            await kill(second)
    assert receiver.got == [(job, "1"), (job, "2")]
    attempts = view["callback"]["attempts"]
    assert [(a["attempt"], a["status"]) for a in attempts] == [(1, None), (2, 200)]
    assert attempts[0]["error"].startswith("interrupted")


async def wait_state(
    session: aiohttp.ClientSession, url: str, states: set[str], deadline: float = 30
) -> dict[str, Any]:
    end = time.monotonic() + deadline
    while True:
        async with session.get(url) as r:
            view: dict[str, Any] = await r.json()
        if view.get("state") in states:
            return view
        assert time.monotonic() < end, f"still {view.get('state')}"
        await asyncio.sleep(0.05)


class Burst:
    """Clients that keep sending async requests, through the proxy's deaths, until `wanted`
    of them were answered 202; a request cut by a death is not a promise and is not counted."""

    def __init__(self, base: str, callback: str, wanted: int) -> None:
        self.base, self.callback, self.wanted = base, callback, wanted
        self.accepted: list[str] = []
        self.grew = asyncio.Event()

    async def client(self, session: aiohttp.ClientSession, n: int) -> None:
        headers = {**ASYNC, "X-ATK-Callback": self.callback}
        while len(self.accepted) < self.wanted:
            try:
                async with session.post(f"{self.base}/orders/{n}", json={}, headers=headers) as r:
                    if r.status == 202:
                        self.accepted.append(r.headers["X-ATK-Job"])
                        self.grew.set()
            except aiohttp.ClientError:
                await asyncio.sleep(0.02)  # the proxy is down: try again until it is back


async def test_kill_at_random_moments_during_a_burst_loses_no_accepted_job(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    receiver = Receiver()
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    upstream, port = await start_app(aiohttp_server, Echo().app), free_port()
    # more attempts than kills: a job whose attempts the kills all interrupt would end dead
    config = defines(tmp_path, port, upstream, "async.max_queue=100000",
                     "callback.retry.schedule=[0s, 100ms, 200ms, 300ms, 500ms, 1s]")  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    burst = Burst(base, callback, wanted=500)
    rng = random.Random(7)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as session:
        proxy = await start_proxy(*config)
        clients = [asyncio.create_task(burst.client(session, n)) for n in range(16)]
        kills = 0
        # four kills at random moments of the burst: each after a random share of it
        marks = sorted(rng.sample(range(20, burst.wanted - 20), 4))
        for mark in marks:
            while len(burst.accepted) < mark:
                burst.grew.clear()
                await burst.grew.wait()
            await kill(proxy)
            kills += 1
            proxy = await start_proxy(*config)
        await asyncio.gather(*clients)
        try:
            await wait_healthy(session, f"{base}/_atk/health")
            views = {}
            for job in burst.accepted:
                url = f"{base}/_atk/jobs/{job}"
                views[job] = await wait_state(session, url, TERMINAL, deadline=60)
        finally:
            await kill(proxy)
    received = Counter(job for job, _ in receiver.got)
    missing = [job for job in burst.accepted if job not in received]
    dead = [view for view in views.values() if view["state"] == "dead"]
    duplicates = sum(count - 1 for count in received.values())
    print(f"kills={kills} accepted={len(burst.accepted)} duplicates={duplicates}")
    assert kills == 4
    assert len(set(burst.accepted)) >= 500
    assert missing == [] and dead == []
