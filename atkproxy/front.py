"""The front door: plain pass-through served on a protocol of atkproxy's own, on httptools.

aiohttp's server costs about 31 µs of CPU per request answering by itself, more than nginx's
whole proxied request (benchmarks/RESULTS.md): its parser's message, headers multidict,
payload stream, request and response objects and writer are made for every request. A proxy's
usual request needs none of them. Every connection of the main listener starts on `Front`:

- a request that arrives whole in one read and is plain pass-through (HTTP/1.1, an
  origin-form target with no `%` escape outside the management prefix, a Host header, no
  Expect, Upgrade, Transfer-Encoding, X-ATK-Mode or Prefer, no repeated singleton header, a
  body of at most 64 KiB) is served here: header hygiene (headers.py), the upstream's pooled
  keep-alive client (http1.py), and the answer written with one write when it has all arrived,
  streamed with backpressure otherwise;
- at the first request that is anything else (an async opt-in, a management path, a head or
  body split across reads, pipelined requests, a parse error...) the connection is handed to
  aiohttp's protocol (`connections.GuardedHandler`) with every byte of that request, and stays
  there: its limits, deadlines, JSON errors, routes and the application's middlewares apply
  as before. Nothing of that request was acted on before the hand-over.

The answers are the ones aiohttp gives (`tests/integration/test_front.py` sends the same
requests both ways): the same headers kept and added (Date, `Server: atkproxy`, Content-Type
for a body without one, Connection: close), the same counts, access line and in-flight count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

import structlog
from aiohttp import web_response
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.web_protocol import RequestHandler

from .connections import HEADER_LATE, GuardedServer
from .headers import forward_headers, response_headers
from .http1 import Connection
from .inflight import InFlight
from .observability import access_line
from .plain import PlainReader, PlainRequest
from .proxy import NO_BODY, PassThrough, failure
from .upstream import CHUNK, Answer, UpstreamError, declared_length, error_body

if TYPE_CHECKING:
    from .settings import Listen

log = structlog.get_logger("atkproxy.proxy")

_JSON = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """What the front needs of the application, settled once it has started."""

    passing: PassThrough
    prefix: str  # the management prefix: its requests go to the application
    in_flight: InFlight
    access: bool  # an access line per request


class FrontServer(GuardedServer):
    """aiohttp's server for the application, whose connections start on `Front` once
    `door` is set (by server.ProxyRunner, after the application's startup)."""

    door: FrontDoor | None = None

    def __call__(self) -> Any:
        return self.handler() if self.door is None else Front(self, self.door)

    def handler(self) -> RequestHandler:
        """aiohttp's protocol for one connection."""
        return super().__call__()

    @property
    def listen(self) -> Listen:
        return self._listen


class Front(asyncio.Protocol):
    """One client connection, served here while its requests are plain pass-through."""

    def __init__(self, server: FrontServer, door: FrontDoor) -> None:
        self._server = server
        self._door = door
        self._loop = asyncio.get_running_loop()
        self._reader = PlainReader(door.prefix)
        self._transport: asyncio.Transport | None = None
        self._busy = False  # a request is being answered
        self._queued = bytearray()  # what came meanwhile
        self._closing = False
        self._drained: asyncio.Future[None] | None = None
        self._peer: str | None = None
        self._scheme = "http"
        self._last = self._loop.time()
        self._limit = server.listen.header_timeout  # idle limit: keepalive_timeout after a request
        self._watch: asyncio.TimerHandle | None = None
        self._worker: asyncio.Task[None] | None = None  # answers the requests, in turn
        self._pending: PlainRequest | None = None  # the next request
        self._wake: asyncio.Future[None] | None = None  # the worker waits on it between requests
        self._ended = False  # closed, or handed over: the worker stops

    # -- the connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, transport)
        if len(self._server.connections) >= self._server.listen.max_connections:
            self._hand_over(b"")  # aiohttp's protocol answers the 503
            return
        self._server.connection_made(cast(RequestHandler, self), transport)
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) else None
        self._scheme = "https" if transport.get_extra_info("sslcontext") else "http"
        self._watch = self._loop.call_later(self._limit, self._idle_check)

    def data_received(self, data: bytes) -> None:
        if self._busy:  # the next request (or anything else) waits for this answer
            self._queued += data
            if len(self._queued) > CHUNK and self._transport is not None:
                self._transport.pause_reading()
            return
        self._read(data)

    def eof_received(self) -> bool | None:
        return None  # the transport closes, as aiohttp's protocol lets it

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._watch is not None:
            self._watch.cancel()
        self._server.connection_lost(cast(RequestHandler, self), exc)
        self._wake_writer()
        self._end()

    def pause_writing(self) -> None:
        self._drained = self._loop.create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- what aiohttp's server asks of a connection (pre_shutdown, shutdown, its map)

    _task_handler = None  # web.Server.connection_lost looks for aiohttp's per-connection task

    def close(self) -> None:
        """No more requests: closed now if idle, else after the answer in progress."""
        self._closing = True
        if not self._busy and self._transport is not None:
            self._transport.close()

    async def shutdown(self, timeout: float | None) -> None:  # noqa: ASYNC109
        """The answer in progress gets `timeout` seconds, then it is cancelled and the
        connection cut (aiohttp's server calls this for each connection at its cleanup)."""
        self.close()
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):  # then cut, below
                async with asyncio.timeout(timeout):
                    await asyncio.shield(self._worker)
            self._worker.cancel()
        if self._transport is not None:
            self._transport.close()

    # -- reading, and handing over

    def _read(self, data: bytes) -> None:
        request = self._reader.read(data)
        if request is None:
            self._hand_over(data)
            return
        self._busy = True
        self._pending = request
        if self._worker is None:
            self._worker = self._loop.create_task(self._work())
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def _hand_over(self, data: bytes) -> None:
        """The connection to aiohttp's protocol, from the first byte of this request on."""
        transport = self._transport
        assert transport is not None
        if self._watch is not None:
            self._watch.cancel()
        self._server.connection_lost(cast(RequestHandler, self), None)
        self._end()
        handler = self._server.handler()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if data:
            handler.data_received(data)

    # -- answering

    async def _work(self) -> None:
        """Answer the connection's requests in turn: one task per connection, where one per
        request cost 4 µs."""
        while not self._ended:
            if self._pending is None:
                self._wake = self._loop.create_future()
                await self._wake  # the next request, or the end
                continue
            request, self._pending = self._pending, None
            await self._answer(request)

    def _end(self) -> None:
        """No more requests here: the worker stops."""
        self._ended = True
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _answer(self, request: PlainRequest) -> None:
        """Answer one request, then go on with the connection."""
        door = self._door
        started = self._loop.time()
        door.in_flight.enter()
        status, size = 500, 0
        try:
            status, size = await self._relay(request)
        except Exception:
            log.exception("request failed", method=request.method, path=_path(request.target))
            self._abort()
        finally:
            door.in_flight.leave()
        door.passing.metrics.request("sync", status)
        if door.access:
            duration = self._loop.time() - started
            access_line(request.method, _path(request.target), status, duration, size, None)
        self._done(request.keep)

    async def _relay(self, request: PlainRequest) -> tuple[int, int]:
        """Relay to the upstream; the status and the body bytes sent back."""
        passing = self._door.passing
        headers = forward_headers(
            request.pairs, self._peer, self._scheme, request.host, passing.trusted
        )
        upstream, started = passing.upstream, time.perf_counter()
        method, target, body = request.method, request.target, request.body
        try:
            conn, answer = await upstream.exchange(method, target, headers, body)
        except UpstreamError as exc:
            return self._failed(request, exc)
        try:
            passing.metrics.upstream_answered(started)
            return await self._send(request, conn, answer)
        finally:
            upstream.release(conn)

    async def _send(
        self, request: PlainRequest, conn: Connection, answer: Answer
    ) -> tuple[int, int]:
        status, head_only = answer.status, request.method == "HEAD"
        keep = request.keep and not self._closing
        if status in NO_BODY or status < 200 or head_only:
            self._write(_head(answer, keep, None, empty=True))
            return status, 0
        if answer.complete:
            data = answer.ready_body()
            self._write(_head(answer, keep, len(data)) + data)
            return status, len(data)
        try:
            return status, await self._stream(answer, keep)
        except ConnectionError:
            failure(request.method, _path(request.target), None)
            return status, 0
        except UpstreamError as exc:
            failure(request.method, _path(request.target), exc, mid_answer=True)
            self._abort()
            return status, 0

    async def _stream(self, answer: Answer, keep: bool) -> int:
        length = declared_length(answer.pairs)
        self._write(_head(answer, keep, length))
        sent = 0
        async for chunk in answer.chunks():
            sent += len(chunk)
            self._write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if length is None else chunk)
            if self._drained is not None:
                await self._drained
            if self._transport_gone():
                raise ConnectionResetError
        if length is None:
            self._write(b"0\r\n\r\n")
        return sent

    def _failed(self, request: PlainRequest, exc: UpstreamError) -> tuple[int, int]:
        failure(request.method, _path(request.target), None if self._transport_gone() else exc)
        body = error_body(exc.status, str(exc))
        keep = request.keep and not self._closing
        self._write(_error_head(exc.status, keep, len(body)) + body)
        return exc.status, len(body)

    def _done(self, keep: bool) -> None:
        """After an answer: the next request, or the end of the connection."""
        self._busy = False
        self._last, self._limit = self._loop.time(), self._server.listen.keepalive_timeout
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._closing or not keep:
            transport.close()
            return
        if self._queued:
            data = bytes(self._queued)
            self._queued.clear()
            transport.resume_reading()
            self._read(data)

    def _write(self, data: bytes) -> None:
        if not self._transport_gone():
            assert self._transport is not None
            self._transport.write(data)

    def _transport_gone(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def _abort(self) -> None:
        """The answer cannot be completed: the client sees the connection cut."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _wake_writer(self) -> None:
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _idle_check(self) -> None:
        """Close a connection idle beyond its limit: listen.header_timeout before its first
        request, listen.keepalive_timeout after an answer."""
        idle = self._loop.time() - self._last
        if self._busy or idle < self._limit:
            wait = self._limit if self._busy else self._limit - idle
            self._watch = self._loop.call_later(wait, self._idle_check)
            return
        self._watch = None
        if self._worker is None:  # no request came
            log.info(HEADER_LATE)
        if self._transport is not None:
            self._transport.close()


def _path(target: str) -> str:
    return target.partition("?")[0]


def _status_line(status: int, reason: str | None) -> str:
    if reason is None:
        with contextlib.suppress(ValueError):
            reason = HTTPStatus(status).phrase
    return f"HTTP/1.1 {status} {reason or ''}\r\n"


def _head(answer: Answer, keep: bool, length: int | None, *, empty: bool = False) -> bytes:
    """The answer's status line and headers as aiohttp writes them, in one walk over the
    upstream's. `length`: the body's Content-Length, None for a chunked one; `empty`: an
    answer without a body (to a HEAD, or 1xx, 204, 304), whose headers go as they are but
    for a Content-Length beside 1xx, 204 or 304."""
    status = answer.status
    keep_length = empty and status not in NO_BODY and status >= 200  # a HEAD's
    lines = [_status_line(status, answer.reason)]
    typed = dated = named = False
    for name, value in response_headers(answer.pairs):
        lower = name.lower()
        if lower == "content-length":
            if not keep_length:
                continue  # the length stated is the one of what is sent
        elif lower == "content-type":
            typed = True
        elif lower == "date":
            dated = True
        elif lower == "server":
            named = True
        lines.append(f"{name}: {value}\r\n")
    if not empty:
        if length != 0 and not typed:
            lines.append("Content-Type: application/octet-stream\r\n")
        framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
        lines.append(framing + "\r\n")
    return _end(lines, keep, dated, named)


def _error_head(status: int, keep: bool, length: int) -> bytes:
    lines = [_status_line(status, None), f"Content-Type: {_JSON}\r\n"]
    lines.append(f"Content-Length: {length}\r\n")
    return _end(lines, keep, False, False)


def _end(lines: list[str], keep: bool, dated: bool, named: bool) -> bytes:
    """The headers aiohttp adds (Date, Server, Connection: close), the blank line, bytes."""
    if not dated:
        lines.append(f"Date: {rfc822_formatted_time()}\r\n")
    if not named:
        lines.append(f"Server: {web_response.SERVER_SOFTWARE}\r\n")  # type: ignore[attr-defined]
    lines.append("\r\n" if keep else "Connection: close\r\n\r\n")
    # the upstream's header lines came through httptools, which refuses a line break in them
    return "".join(lines).encode("utf-8", "surrogateescape")
