"""A callback receiver: records every request it gets and answers with a chosen status.

Tests await `next()` for the next callback instead of sleeping and polling, and queue answers in
`respond_with` (consumed one per request, 200 once empty) to make deliveries fail or be refused.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class CallbackReceiver:
    """An aiohttp application that records what is posted to it, on any path and method."""

    def __init__(self, respond_with: list[int] | None = None) -> None:
        self.received: list[Received] = []
        self.respond_with: list[int] = list(respond_with or [])
        self._arrivals: asyncio.Queue[Received] = asyncio.Queue()
        self.app = web.Application()
        # what came so far, for a test outside the process (the e2e pod); callbacks are POSTs
        self.app.router.add_get("/_received", self._list)
        self.app.router.add_route("*", "/{tail:.*}", self._receive)

    # A default bound, so a callback that never comes fails the test instead of hanging it.
    async def next(self, timeout: float = 10.0) -> Received:  # noqa: ASYNC109
        """The next request not yet taken; raises TimeoutError when none arrives in time."""
        async with asyncio.timeout(timeout):
            return await self._arrivals.get()

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([as_json(r) for r in self.received])

    async def _receive(self, request: web.Request) -> web.Response:
        received = Received(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDictProxy(CIMultiDict(request.headers)),
            body=await request.read(),
        )
        self.received.append(received)
        self._arrivals.put_nowait(received)
        status = self.respond_with.pop(0) if self.respond_with else 200
        return web.Response(status=status)


def as_json(received: Received) -> dict[str, Any]:
    return {
        "method": received.method,
        "path": received.path,
        "query": received.query,
        "headers": dict(received.headers),
        "body": received.body.decode("utf-8", "replace"),
    }
