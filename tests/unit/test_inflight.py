"""The count of requests in flight that the shutdown waits for (inflight.py)."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from atkproxy.inflight import InFlight


async def test_wait_gives_what_is_left_at_the_deadline() -> None:
    count = InFlight()
    assert await count.wait(0) == 0
    count.enter()
    count.enter()
    assert await count.wait(0.05) == 2
    count.leave()
    assert (count.count, count.idle.is_set()) == (1, False)
    count.leave()
    assert (count.count, count.idle.is_set()) == (0, True)


async def test_wait_ends_when_the_last_request_leaves() -> None:
    count = InFlight()
    count.enter()
    waiting = asyncio.create_task(count.wait(30))
    await asyncio.sleep(0)  # it waits
    assert not waiting.done()
    count.leave()
    async with asyncio.timeout(5):
        assert await waiting == 0


async def test_track_counts_a_request_while_its_handler_runs() -> None:
    count = InFlight()
    seen: list[int] = []

    async def handler(request: web.BaseRequest) -> web.StreamResponse:
        seen.append(count.count)
        raise web.HTTPConflict

    tracked = count.track(handler)
    with contextlib.suppress(web.HTTPConflict):
        await tracked(make_mocked_request("GET", "/"))
    assert (seen, count.count, count.idle.is_set()) == ([1], 0, True)
