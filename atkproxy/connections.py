"""Client connections: a header deadline, a connection bound, aiohttp's errors as JSON.

aiohttp bounds each header line but not the time a client takes to send them, nor the number of
connections, and answers its own parse errors in text/plain with the offending text in the body.
`GuardedHandler` (one per connection) adds:
- a header deadline: a request's header must be complete `listen.header_timeout` after the
  connection opens or after its first byte arrives, else the connection is closed;
- a bound on connections (`listen.max_connections`): one more is answered 503 and closed;
- aiohttp's own errors (a malformed request, a failing handler) as JSON that echoes nothing the
  client sent, and one log line without header values.
`GuardedApplication` is where aiohttp is told to use it, for run_app and test servers alike.
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod
from aiohttp.web_protocol import RequestHandler

from .errors import json_error
from .settings import Listen

log = structlog.get_logger("atkproxy.http")
LISTEN = web.AppKey("listen", Listen)
HEADER_LATE = "connection closed: no complete request header within listen.header_timeout"


class GuardedHandler(RequestHandler):
    """aiohttp's connection protocol with a header deadline, a connection bound, JSON errors."""

    def __init__(self, manager: web.Server, *, listen: Listen, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._listen = listen
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        crowded = len(self._manager.connections) >= self._listen.max_connections  # type: ignore[union-attr]
        super().connection_made(transport)
        if crowded:
            log.warning("connection refused: listen.max_connections reached")
            self._refuse(transport)
            return
        self._start_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # After the bytes are parsed: a header that came whole (the usual case) sets no timer.
        if self._request_in_progress or self._messages:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None
        elif self._header_deadline is None and data:
            self._start_header_deadline()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """aiohttp's error answer, as JSON naming only the status; logged without its text."""
        error = type(exc).__name__ if exc is not None else None
        if status >= 500:
            log.error("request failed", status=status, error=error, exc_info=exc)
        elif isinstance(exc, BadHttpMethod):  # not HTTP at all (TLS, a scanner): as aiohttp does
            log.debug("malformed request", status=status, error=error)
        else:  # the parser's message quotes the client's bytes (an Authorization value...)
            log.warning("malformed request", status=status, error=error)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun: no error answer can follow")
        response = json_error(status, _phrase(status))
        response.force_close()
        return response

    def _waiting_for_header(self) -> bool:
        return not self._request_in_progress and not self._messages

    def _start_header_deadline(self) -> None:
        self._header_deadline = self._loop.call_later(
            self._listen.header_timeout, self._header_late
        )

    def _header_late(self) -> None:
        self._header_deadline = None
        if self._waiting_for_header() and self.transport is not None:
            log.info(HEADER_LATE)
            self.force_close()

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        body = json.dumps({"error": "too many connections; retry later", "status": 503})
        head = (
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        if isinstance(transport, asyncio.WriteTransport):
            transport.write((head + body).encode())
        self.force_close()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


class GuardedServer(web.Server):
    def __init__(self, *args: Any, listen: Listen, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._listen = listen

    def __call__(self) -> RequestHandler:
        return GuardedHandler(self, loop=self._loop, listen=self._listen, **self._kwargs)


with warnings.catch_warnings():
    # aiohttp discourages subclassing Application; _make_handler is the one place where the
    # connection protocol is chosen, for run_app and the test servers alike.
    warnings.simplefilter("ignore", DeprecationWarning)

    class GuardedApplication(web.Application):
        """An Application whose connections are GuardedHandlers, limited by app[LISTEN]."""

        def _make_handler(
            self,
            *,
            loop: asyncio.AbstractEventLoop | None = None,
            server_class: type[GuardedServer] = GuardedServer,
            **kwargs: Any,
        ) -> web.Server:
            plain = super()._make_handler(loop=loop, **kwargs)
            server = server_class(
                plain.request_handler,
                request_factory=plain.request_factory,
                handler_cancellation=plain.handler_cancellation,
                loop=loop,
                listen=self.get(LISTEN, Listen()),
                **plain._kwargs,
            )
            return server


def handler_args(listen: Listen) -> dict[str, Any]:
    """aiohttp's own per-connection limits."""
    return {"max_field_size": 16 * 1024, "keepalive_timeout": listen.keepalive_timeout}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def origin_form_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """`GET http://host/x` (absolute form) is for proxies of another kind: 400."""
    target = request.raw_path
    if not target.startswith("/") and not (target == "*" and request.method == "OPTIONS"):
        log.warning("request rejected", status=400, reason="absolute-form request target")
        return json_error(400, "the request target must be a path (origin form)")
    return await handler(request)
