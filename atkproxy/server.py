"""Serving the application with pass-through on aiohttp's low-level path.

aiohttp's Application sends every request through its router, match info and middleware chain.
Pass-through needs none of it: `ProxyRunner` installs `Dispatcher` as the server's request
handler, which hands a request without the async opt-in straight to `proxy.PassThrough`, and
everything else (the management API under its prefix, async requests, requests the mode check
rejects) to the application as before, so routes, cleanup contexts and signals work unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiohttp import web

from .accept import ASYNC_METHODS, MODE, requested_mode
from .errors import Rejected
from .keys import SETTINGS
from .proxy import PassThrough

EXPECT = "Expect"
PREFER = "Prefer"
RequestHandler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class Dispatcher:
    """The server's request handler: pass-through direct, the rest through the application."""

    def __init__(self, app: web.Application, routed: RequestHandler) -> None:
        self._routed = routed
        self._prefix = app[SETTINGS].management.prefix
        self._pass = PassThrough.of(app)

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        if self._direct(request):
            # the server's request factory is the application's: a web.Request
            response = await self._pass(cast(web.Request, request))
            self._pass.metrics.request("sync", response.status)
            return response
        return await self._routed(request)

    def _direct(self, request: web.BaseRequest) -> bool:
        """Pass-through needing nothing of the application: an origin-form target (the
        application refuses the others), not under the management prefix, no Expect (the
        route's expect handler answers it), no async opt-in."""
        headers = request.headers
        if not request.raw_path.startswith("/") or EXPECT in headers:
            return False
        if request.path.startswith(self._prefix):
            return False
        if MODE not in headers and PREFER not in headers:
            return True  # the usual request: nothing to parse
        try:
            mode = requested_mode(headers)
        except Rejected:
            return False  # the application answers and logs it
        return not (mode.is_async and request.method in ASYNC_METHODS)


class ProxyRunner(web.AppRunner):
    """An AppRunner whose server dispatches with `Dispatcher`; `wrap` (if given) wraps the
    dispatcher, so that it sees every request, pass-through included (the shutdown's count
    of requests in flight)."""

    def __init__(
        self,
        app: web.Application,
        *,
        wrap: Callable[[RequestHandler], RequestHandler] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self._wrap = wrap

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs the application's startup first
        handler: RequestHandler = Dispatcher(self.app, server.request_handler)
        server.request_handler = self._wrap(handler) if self._wrap else handler
        return server
