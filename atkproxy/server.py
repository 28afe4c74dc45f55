"""Serving the application: the front door first, then aiohttp's low-level path.

`ProxyRunner` makes every connection of the main listener start on `front.Front`, which
serves plain pass-through itself and hands any other request's connection to aiohttp's
server. There, aiohttp's Application would send every request through its router, match
info and middleware chain; the two paths a proxy lives on need none of it: `Dispatcher` is
the server's request handler, which hands a request without the async opt-in straight to
`proxy.PassThrough`, an async start (a valid opt-in on POST, PUT, PATCH or DELETE) straight
to the `Acceptor`, and everything else (the management API under its prefix, a request with
Expect, one whose target is not a path, one the mode check rejects) to the application as
before, so routes, cleanup contexts and signals work unchanged. Both direct paths give the
answers and the request counts (atkproxy_requests_total) that the routed one gives.
"""

from __future__ import annotations

from typing import Any, cast

from aiohttp import web

from .accept import ASYNC_METHODS, MODE, SYNC, Mode, requested_mode
from .errors import Rejected
from .front import FrontDoor, FrontServer
from .inflight import InFlight, RequestHandler
from .keys import ACCEPTOR, SETTINGS
from .observability import AccessLogger
from .proxy import PassThrough, rejected

EXPECT = "Expect"
PREFER = "Prefer"


class Dispatcher:
    """The server's request handler: pass-through and async accepts direct, the rest
    through the application."""

    def __init__(self, app: web.Application, routed: RequestHandler) -> None:
        self._routed = routed
        self.prefix = app[SETTINGS].management.prefix
        self.passing = self._pass = PassThrough.of(app)
        self._acceptor = app[ACCEPTOR]  # set by the startup, which has run

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        mode = self._direct(request)
        if mode is None:
            return await self._routed(request)
        # the server's request factory is the application's: a web.Request
        if mode.is_async:
            return await self._accept(cast(web.Request, request), mode)
        response = await self._pass(cast(web.Request, request))
        self._pass.metrics.request("sync", response.status)
        return response

    def _direct(self, request: web.BaseRequest) -> Mode | None:
        """The mode of a request needing nothing of the application, None for the others:
        an origin-form target (the application refuses the others), not under the
        management prefix, no Expect (the route's expect handler answers it), and an
        opt-in the mode check takes (else the application answers and logs it)."""
        headers = request.headers
        if not request.raw_path.startswith("/") or EXPECT in headers:
            return None
        raw = request.raw_path
        # the prefix is matched decoded; a target without an escape is its own decoding
        if (request.path if "%" in raw else raw).startswith(self.prefix):
            return None
        if MODE not in headers and PREFER not in headers:
            return SYNC  # the usual request: nothing to parse
        try:
            mode = requested_mode(headers)
        except Rejected:
            return None
        return mode if mode.is_async and request.method in ASYNC_METHODS else SYNC

    async def _accept(self, request: web.Request, mode: Mode) -> web.StreamResponse:
        """The acceptor's answer, counted as metering.counted counts a routed one: a request
        asking to be a job is mode "async" whatever its answer."""
        count = self._pass.metrics.request
        try:
            response = await self._acceptor.accept(request, mode)
        except Rejected as exc:
            response = rejected(request, exc)
        except web.HTTPException as exc:
            count("async", exc.status)
            raise
        except Exception:
            count("async", 500)
            raise
        count("async", response.status)
        return response


class ProxyRunner(web.AppRunner):
    """An AppRunner whose connections start on front.Front (plain pass-through served on
    atkproxy's own protocol) and whose aiohttp server dispatches with `Dispatcher`.
    `in_flight` (if given) counts every request of both, for the shutdown's wait."""

    def __init__(
        self, app: web.Application, *, in_flight: InFlight | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, server_class=FrontServer, **kwargs)
        self._in_flight = in_flight or InFlight()
        self._access = kwargs.get("access_log") is not None

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()  # runs the application's startup first
        dispatcher = Dispatcher(self.app, server.request_handler)
        server.request_handler = self._in_flight.track(dispatcher)
        access = self._access and AccessLogger.enabled_for(self._kwargs["access_log"])
        door = FrontDoor(dispatcher.passing, dispatcher.prefix, self._in_flight, access)
        cast(FrontServer, server).door = door
        return server
