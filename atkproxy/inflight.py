"""The count of requests being handled, which the shutdown waits for with a deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web

RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class InFlight:
    """Counts the requests being handled, so the shutdown can wait for them with a deadline.

    aiohttp's own wait would take up to twice its timeout (it waits, cancels, then waits
    again for handlers that do not notice the cancellation), which breaks the stated bound.
    """

    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def enter(self) -> None:
        self.count += 1
        self.idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()

    def track(self, handler: RequestHandler) -> RequestHandler:
        """`handler`, counted: every request aiohttp's server hands to it."""

        async def counted(request: web.BaseRequest) -> web.StreamResponse:
            self.enter()
            try:
                return await handler(request)
            finally:
                self.leave()

        return counted

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        """The number of requests still being handled after at most `timeout` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.idle.wait()
        return self.count
