"""Serving the application with pass-through on aiohttp's low-level path.

aiohttp's Application sends every request through its router, match info and middleware chain.
Pass-through needs none of it: `ProxyRunner` installs `Dispatcher` as the server's request
handler, which hands a request without the async opt-in straight to `proxy.pass_through`, and
everything else (the management API under its prefix, async requests, requests the mode check
rejects) to the application as before, so routes, cleanup contexts and signals work unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from .accept import ASYNC_METHODS, MODE, requested_mode
from .errors import Rejected
from .keys import SETTINGS, UPSTREAM
from .proxy import pass_through

EXPECT = "Expect"
PREFER = "Prefer"
RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Dispatcher:
    """The server's request handler: pass-through direct, the rest through the application."""

    def __init__(self, app: web.Application, routed: RequestHandler) -> None:
        self._routed = routed
        self._prefix = app[SETTINGS].management.prefix
        self._upstream = app[UPSTREAM]

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._direct(request):
            # the server's request factory is the application's: a web.Request
            return await pass_through(cast(web.Request, request), self._upstream)
        return await self._routed(request)

    def _direct(self, request: web.BaseRequest) -> bool:
        """Pass-through needing nothing of the application: not under the management prefix,
        no Expect (the route's expect handler answers it), no async opt-in."""
        headers = request.headers
        if EXPECT in headers or request.path.startswith(self._prefix):
            return False
        if MODE not in headers and PREFER not in headers:
            return True  # the usual request: nothing to parse
        try:
            mode = requested_mode(headers)
        except Rejected:
            return False  # the application answers and logs it
        return not (mode.is_async and request.method in ASYNC_METHODS)


class ProxyRunner(web.AppRunner):
    """An AppRunner whose server dispatches with `Dispatcher`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs the application's startup first
        server.request_handler = Dispatcher(self.app, server.request_handler)
        return server


def run(
    app: web.Application,
    host: str,
    port: int,
    loop: asyncio.AbstractEventLoop,
    shutdown_timeout: float,
    **runner_args: Any,
) -> None:
    """Serve until SIGINT or SIGTERM, as web.run_app does, with a ProxyRunner."""

    async def serve() -> None:
        runner = ProxyRunner(app, handle_signals=True, shutdown_timeout=shutdown_timeout,
                             **runner_args)  # fmt: skip
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
            await asyncio.Event().wait()  # until a signal raises GracefulExit
        finally:
            await runner.cleanup()

    asyncio.set_event_loop(loop)
    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        cancel_the_rest(loop)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def cancel_the_rest(loop: asyncio.AbstractEventLoop) -> None:
    """Tasks still pending after the cleanup are cancelled and awaited, as web.run_app does,
    so none is destroyed pending when the loop closes."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
