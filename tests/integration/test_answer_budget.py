"""async.max_answer_memory: the upstream answers jobs hold at once stay within the budget.

A raw upstream on 127.0.0.1 answers each job with its own body; a callback receiver that can
hold its answer keeps the first job (and the answer it holds) alive for as long as the test
needs, which makes "the others wait" a state to observe rather than a race to time."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from atkproxy.engine import Engine
from atkproxy.keys import ENGINE

from .conftest import ProxyFactory, ServerFactory, start_app
from .support import ASYNC, idle, until, wait_job

Client = TestClient[Any, Any]
SIZE = 1024 * 1024 + 3  # an answer; the budget holds one


@asynccontextmanager
async def upstream(bodies: dict[str, bytes], chunked: bool) -> AsyncIterator[str]:
    """Answers `POST /jobs/<name>` with bodies[name], with a Content-Length or chunked."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        path = head.split(" ", 2)[1]
        length = next(
            (int(line.split(":", 1)[1]) for line in head.split("\r\n")
             if line.lower().startswith("content-length:")), 0
        )  # fmt: skip
        await reader.readexactly(length)
        body = bodies[path.rsplit("/", 1)[1]]
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % len(body)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     b"Connection: close\r\n%b\r\n\r\n" % framing)  # fmt: skip
        if chunked:
            for i in range(0, len(body), 100_003):
                piece = body[i : i + 100_003]
                writer.write(b"%x\r\n%b\r\n" % (len(piece), piece))
            writer.write(b"0\r\n\r\n")
        else:
            writer.write(body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


class HoldingReceiver:
    """Records callbacks (job id -> body); answers them only once `release` is set."""

    def __init__(self, refuse_first: bool = False) -> None:
        self.bodies: dict[str, bytes] = {}
        self.release = asyncio.Event()
        self.refuse_first = refuse_first  # the first attempt is answered 503 at once
        self.arrived = 0
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_post("/cb", self.receive)

    async def receive(self, request: web.Request) -> web.Response:
        self.bodies[request.headers["X-ATK-Job"]] = await request.read()
        self.arrived += 1
        if self.refuse_first:
            self.refuse_first = False
            return web.Response(status=503)
        await self.release.wait()
        return web.Response(status=204)


async def submit_all(proxy: Client, names: list[str], callback: str) -> dict[str, str]:
    """The jobs' locations by name."""
    locations = {}
    for name in names:
        headers = {**ASYNC, "X-ATK-Callback": callback}
        async with proxy.post(f"/jobs/{name}", json={"n": name}, headers=headers) as r:
            assert r.status == 202, await r.text()
            locations[name] = r.headers["Location"]
    return locations


async def answer_bytes_gauge(proxy: Client) -> float:
    async with proxy.get("/_atk/metrics") as response:
        text = await response.text()
    [line] = [x for x in text.splitlines() if x.startswith("atkproxy_answer_bytes ")]
    return float(line.split()[1])


def config(budget: int) -> dict[str, Any]:
    return {"async": {"max_answer_memory": budget, "max_result": 4 * SIZE, "max_inflight": 3}}


async def test_a_second_answer_is_not_read_while_the_first_job_holds_the_budget(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    bodies = {name: os.urandom(SIZE) for name in ("a", "b", "c")}
    receiver = HoldingReceiver()
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    async with upstream(bodies, chunked=False) as url:
        proxy = await make_proxy(url, config(SIZE), automatiko=False)
        engine: Engine = proxy.app[ENGINE]
        locations = await submit_all(proxy, list(bodies), callback)

        # one job holds its answer (its callback is held); the other two have their
        # answers' heads and wait for the budget, their bodies not read
        await until(lambda: len(receiver.bodies) == 1 and engine.answers.waiting == 2)
        assert engine.answers.held == SIZE
        assert await answer_bytes_gauge(proxy) == SIZE
        assert len(receiver.bodies) == 1

        receiver.release.set()
        views = {n: await wait_job(proxy, loc, ("delivered",)) for n, loc in locations.items()}
        await idle(proxy)

    assert {n: receiver.bodies[v["job"]] for n, v in views.items()} == bodies  # byte-exact
    assert engine.answers.held == 0
    assert await answer_bytes_gauge(proxy) == 0


@pytest.mark.parametrize(
    ("chunked", "sizes"),
    [(True, [SIZE, SIZE, SIZE]), (False, [3 * SIZE, SIZE])],
    ids=["chunked", "larger-than-the-budget"],
)
async def test_answers_the_budget_cannot_reserve_ahead_still_complete(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory, chunked: bool, sizes: list[int]
) -> None:
    # chunked: counted as they arrive, never waiting; larger: runs alone once nothing is held
    bodies = {f"j{i}": os.urandom(size) for i, size in enumerate(sizes)}
    receiver = HoldingReceiver()
    receiver.release.set()
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    async with upstream(bodies, chunked) as url:
        proxy = await make_proxy(url, config(SIZE), automatiko=False)
        locations = await submit_all(proxy, list(bodies), callback)
        views = {n: await wait_job(proxy, loc, ("delivered",)) for n, loc in locations.items()}
        await idle(proxy)

    assert {n: receiver.bodies[v["job"]] for n, v in views.items()} == bodies
    assert proxy.app[ENGINE].answers.held == 0


async def test_an_answer_read_back_for_a_later_attempt_is_counted(
    make_proxy: ProxyFactory, aiohttp_server: ServerFactory
) -> None:
    # the first attempt fails: the job lets go of its answer, and the delivery lane's claim
    # of the job brings the answer back into memory from the store for the second attempt
    body = os.urandom(SIZE)
    receiver = HoldingReceiver(refuse_first=True)
    callback = await start_app(aiohttp_server, receiver.app) + "/cb"
    retry = {"callback": {"retry": {"schedule": ["0s", "10ms"], "max_age": "1h"}}}
    async with upstream({"a": body}, chunked=False) as url:
        proxy = await make_proxy(url, {**config(SIZE), **retry}, automatiko=False)
        engine: Engine = proxy.app[ENGINE]
        [location] = (await submit_all(proxy, ["a"], callback)).values()

        await until(lambda: receiver.arrived == 2)
        assert engine.answers.held == SIZE  # the second attempt, held by the receiver

        receiver.release.set()
        view = await wait_job(proxy, location, ("delivered",))
        await idle(proxy)

    assert len(view["callback"]["attempts"]) == 2
    assert receiver.bodies[view["job"]] == body
    assert engine.answers.held == 0
