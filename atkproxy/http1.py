"""The upstream client: keep-alive HTTP/1.1 on asyncio Protocols and httptools' C parser.

aiohttp's ClientSession spent about as much CPU per pass-through request as the whole rest of
the proxy (benchmarks/RESULTS.md); this client does only what a reverse proxy to one backend
needs: one pooled origin, exact framing, no cookies, redirects, decompression or tracing.

Framing, request side: bytes (or nothing) go out in one write with Content-Length; a stream goes
out as it comes, with the Content-Length the caller gave or chunked. Response side: httptools
frames Content-Length, chunked, 1xx (skipped), 204 and 304; HEAD answers end with their headers;
an answer with neither length nor chunking ends when the upstream closes.

A connection goes back to the pool only when its answer was read to the end and both sides
allow keep-alive. A pooled connection the upstream closed while idle is dropped before use; one
that turns out closed after the request was written, with no byte of answer, is tried once more
on a fresh connection when the request is idempotent and its body can be sent again.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import cast

import httptools
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .headers import Pairs
from .jobs import Headers, UpstreamRequest, UpstreamResult
from .upstream import (
    Body,
    UpstreamError,
    UpstreamNotReached,
    UpstreamTimeout,
    UpstreamUnavailable,
    buffered_call,
    status_of,
)

# Requests that carry no body unless given one (aiohttp's list): the others get Content-Length: 0
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "CONNECT", "TRACE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
HIGH_WATER = 256 * 1024  # buffered answer bytes at which reading from the upstream pauses
LOW_WATER = 64 * 1024
_FRAMING = frozenset({"content-length", "transfer-encoding", "host"})
# Opens a transport for the protocol the factory makes, in place of the pool's own connect
# (the callback client dials through the destination policy: dial.py)
Dial = Callable[[Callable[[], asyncio.BaseProtocol]], Awaitable[None]]


class _Stale(UpstreamUnavailable):
    """A reused connection closed with no byte of answer: the request may go again, on a fresh
    connection; `sent` says whether it was written first (then only a replayable one may)."""

    def __init__(self, sent: bool) -> None:
        super().__init__("upstream unavailable: it closed an idle connection")
        self.sent = sent


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


class Answer:
    """An upstream answer whose body is still to be read (the `stream()` context's value)."""

    __slots__ = ("_conn", "_headers", "pairs", "reason", "status")

    def __init__(self, conn: Connection, status: int, reason: str, pairs: Headers) -> None:
        self.status = status
        self.reason = reason
        self.pairs = pairs
        self._headers: CIMultiDictProxy[str] | None = None
        self._conn = conn

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self.pairs))
        return self._headers

    @property
    def complete(self) -> bool:
        """The whole body has arrived (and sits in memory)."""
        return self._conn.complete

    def ready_body(self) -> bytes:
        """The body, when `complete`: no wait."""
        return self._conn.take_all()

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._conn.read_chunk():
            yield chunk


class Connection(asyncio.Protocol):
    """One connection to the upstream, one request at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: Pool) -> None:
        self._loop = loop
        self._pool = pool
        self._timeout = pool.timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._parser = httptools.HttpResponseParser(self)
        self._fresh_parser = False
        self._active = False
        self._write_paused = False
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._begin(head_only=False)

    # -- per request state ------------------------------------------------------------

    def _begin(self, head_only: bool) -> None:
        self._head_only = head_only
        self._raw: list[tuple[bytes, bytes]] = []
        self._reason = b""
        self._status = 0
        self._informational = False
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self._got_any = False
        self._spoiled = False  # the request was cut short: the connection is done
        self._error: UpstreamError | None = None
        self._body: deque[bytes] = deque()
        self._buffered = 0
        self._read_paused = False
        self._waiter: asyncio.Future[None] | None = None

    def start(self, head_only: bool) -> None:
        if self._fresh_parser:  # a HEAD answer left the old one expecting a body
            self._parser = httptools.HttpResponseParser(self)
            self._fresh_parser = False
        self._begin(head_only)
        self._active = True

    def finish(self) -> bool:
        """The request is over; True when the connection can serve another."""
        self._active = False
        self.reused = True
        if self._body:  # a complete answer nobody read (a status probe): the line is clean
            self.take_all()
        return self.complete and self.keep_alive and not (self.closed or self._spoiled)

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if not self._active:  # nothing was asked: a broken upstream
            self.close()
            return
        self._got_any = True
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(UpstreamUnavailable(f"upstream unavailable: bad answer ({exc!r})"))
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost settles the answer

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool.forget(self)
        if self._active and not self.complete:
            self._lost()
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    # -- httptools callbacks ----------------------------------------------------------

    def on_message_begin(self) -> None:
        self._raw = []

    def on_status(self, reason: bytes) -> None:
        self._reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._informational = True  # 100 Continue and friends: wait for the real one
            return
        self._status = status
        self.headers_done = True
        if self._head_only:  # no body follows, whatever the headers say
            self._fresh_parser = True
            self._done()
        else:
            self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete:  # a body after a HEAD answer: ignored, and the connection with it
            self._spoiled = True
            return
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._read_paused and self.transport:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._fresh_parser:  # after HEAD, _done already ran
            self._done()

    # -- settling ---------------------------------------------------------------------

    def _done(self) -> None:
        self.complete = True
        self.keep_alive = self._parser.should_keep_alive()
        self._wake()

    def _lost(self) -> None:
        if self.headers_done and not self._framed():
            self.complete = True  # a body delimited by the close itself
        elif not self._got_any and self.reused:
            self._fail(_Stale(sent=True))
        else:
            self._fail(UpstreamUnavailable("upstream unavailable: connection closed"))

    def _framed(self) -> bool:
        if self._status in (204, 304):
            return True
        names = {name.lower() for name, _ in self._raw}
        return b"content-length" in names or b"transfer-encoding" in names

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _expire(self) -> None:
        self._fail(UpstreamTimeout("upstream did not answer in time"))
        self.close()

    async def _wait(self) -> None:
        """Until the next event on this connection, at most upstream.timeout.

        The bound is a deadline moved at each wait, watched by one timer that is re-armed
        only when it fires early: an event loop timer made and cancelled per wait cost
        1.7 µs, a few per cent of a pass-through request."""
        if self._error is not None:
            raise self._error
        self._waiter = self._loop.create_future()
        self._deadline = self._loop.time() + self._timeout
        if self._timer is None:
            self._timer = self._loop.call_at(self._deadline, self._watch)
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _watch(self) -> None:
        """The timer: expire a wait past its deadline; nothing to do while none is waiting."""
        self._timer = None
        if self._waiter is None:
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._watch)
            return
        self._expire()

    # -- the request ------------------------------------------------------------------

    async def send(self, head: bytes, body: Body, length: int | None) -> None:
        """Write the request; a stream without a known length goes out chunked."""
        assert self.transport is not None
        if body is None or isinstance(body, bytes | bytearray | memoryview):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            await self._send_stream(body, chunked=length is None)
        if self._write_paused:
            await self._drain()

    def send_now(self, data: bytes) -> bool:
        """Write without waiting; False when the transport wants a drain (`send(b"", ...)`)."""
        assert self.transport is not None
        self.transport.write(data)
        return not self._write_paused

    async def _send_stream(self, body: AsyncIterable[bytes], chunked: bool) -> None:
        assert self.transport is not None
        async for chunk in body:
            if self.closed or self.headers_done:  # the upstream answered or left early
                self._spoiled = True
                break
            if chunk:
                self.transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
            if self._write_paused:
                await self._drain()
        else:
            if chunked and not self.closed:
                self.transport.write(b"0\r\n\r\n")

    async def _drain(self) -> None:
        while self._write_paused and not self.closed and not self.headers_done:
            await self._wait()

    async def answer(self) -> Answer:
        while not self.headers_done:
            await self._wait()
        pairs = [
            (n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
            for n, v in self._raw
        ]
        return Answer(self, self._status, _decode(self._reason), pairs)

    def take_all(self) -> bytes:
        body = self._body
        data = body.popleft() if len(body) == 1 else b"".join(body)
        body.clear()
        self._buffered = 0
        return data

    async def read_chunk(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        while not self._body:
            if self.complete:
                return b""
            await self._wait()
        data = self.take_all()
        if self._read_paused and self.transport is not None:
            self._read_paused = False
            self.transport.resume_reading()
        return data

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


class Pool:
    """At most `size` connections to one origin, idle ones reused last-in first-out."""

    def __init__(
        self,
        url: URL,
        size: int,
        timeout: float,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        dial: Dial | None = None,
    ) -> None:
        self.host = url.raw_host or ""
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        self.size = size
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: list[Connection] = []
        self._open: set[Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._dial = dial

    def idle(self) -> Connection | None:
        """A pooled connection still open, without waiting; None when there is none."""
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def acquire(self, fresh: bool = False) -> Connection:
        while True:
            while self._idle and not fresh:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            if len(self._open) < self.size:
                return await self._connect()
            await self._slot()

    async def _slot(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, self.connect_timeout)
        except TimeoutError:
            raise UpstreamNotReached("upstream not reached: no free connection in time") from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def _connect(self) -> Connection:
        loop = asyncio.get_running_loop()
        conn = Connection(loop, self)
        self._open.add(conn)
        if self._dial is not None:
            return await self._dialled(conn)
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: conn,
                    self.host,
                    self.port,
                    ssl=self.ssl,
                    server_hostname=self.host if self.ssl else None,
                )
        except TimeoutError:
            self.forget(conn)
            raise UpstreamNotReached("upstream not reached in time") from None
        except OSError as exc:
            self.forget(conn)
            reason = exc.strerror or exc.__class__.__name__
            raise UpstreamNotReached(f"upstream not reached: {reason}") from exc
        return conn

    async def _dialled(self, conn: Connection) -> Connection:
        """`conn` connected by the pool's `dial`, whose errors pass through as they are."""
        assert self._dial is not None
        try:
            await self._dial(lambda: conn)
        except BaseException:
            self.forget(conn)
            raise
        return conn

    def release(self, conn: Connection) -> None:
        if conn.finish():
            self._idle.append(conn)
            self._wake_one()
        else:
            conn.close()
            self.forget(conn)

    def forget(self, conn: Connection) -> None:
        """The connection is gone (or going): its slot is free."""
        if conn in self._open:
            self._open.discard(conn)
            if conn in self._idle:
                self._idle.remove(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._idle.clear()


def request_head(
    method: str, path_qs: str, host: str, headers: Pairs, body: Body
) -> tuple[bytes, int | None]:
    """The request line and headers, framed for `body`; and the length the body must have."""
    given: str | None = None
    lines = [f"{method} {path_qs} HTTP/1.1\r\nHost: {host}\r\n"]
    for name, value in headers:
        lower = name.lower()
        if lower in _FRAMING:
            if lower == "content-length":
                given = value
            continue
        lines.append(f"{name}: {value}\r\n")
    if _breaks(lines[0]) != 2 or _breaks("".join(lines[1:])) != len(lines) - 1:
        raise UpstreamUnavailable("request not sent: a line break inside its head")
    length: int | None
    if body is None:
        length = None if method in NO_BODY_METHODS else 0
    elif isinstance(body, bytes | bytearray | memoryview):
        length = len(body)
    else:
        length = int(given) if given is not None and given.strip().isdigit() else None
    if length is not None:
        lines.append(f"Content-Length: {length}\r\n\r\n")
    else:
        lines.append("Transfer-Encoding: chunked\r\n\r\n" if body is not None else "\r\n")
    return "".join(lines).encode("utf-8", "surrogateescape"), length


def _breaks(text: str) -> int:
    """Line breaks in `text`; one in a name, a value or the target would split the head."""
    lf = text.count("\n")
    return lf if text.count("\r") == lf else -1


def _replayable(method: str, body: Body) -> bool:
    return method in IDEMPOTENT and (body is None or isinstance(body, bytes))


class _Exchange:
    """`Http1Upstream.stream`'s context: a class, as the generator-based one cost more."""

    __slots__ = ("_args", "_conn", "_upstream")

    def __init__(
        self, upstream: Http1Upstream, method: str, head: bytes, body: Body, length: int | None
    ) -> None:
        self._upstream = upstream
        self._args = (method, head, body, length)
        self._conn: Connection | None = None

    async def __aenter__(self) -> Answer:
        self._conn, answer = await self._upstream._exchange(*self._args)
        return answer

    async def __aexit__(self, *exc_info: object) -> None:
        if self._conn is not None:
            self._upstream._pool.release(self._conn)


class Http1Upstream:
    """The one way to the backend: streaming for pass-through, buffered for jobs."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        ssl_context: ssl.SSLContext | None = None,  # https: the system's trust store if None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        url = URL(self.base_url)
        self._prefix = url.raw_path.rstrip("/")
        self._host = url.raw_authority
        self._pool = Pool(url, max_connections, timeout, connect_timeout, ssl_context)

    def stream(
        self, method: str, path_qs: str, headers: Pairs, body: Body
    ) -> AbstractAsyncContextManager[Answer]:
        """The answer to one request, its body still to be read inside the context."""
        head, length = request_head(method, self._prefix + path_qs, self._host, headers, body)
        return _Exchange(self, method, head, body, length)

    async def exchange(
        self, method: str, path_qs: str, headers: Pairs, body: Body
    ) -> tuple[Connection, Answer]:
        """`stream` without the context manager, for the pass-through path, where its two
        coroutines per request are measurable: the caller hands the connection back with
        `release` once it has read the answer (or given up on it)."""
        head, length = request_head(method, self._prefix + path_qs, self._host, headers, body)
        return await self._exchange(method, head, body, length)

    def release(self, conn: Connection) -> None:
        self._pool.release(conn)

    async def _exchange(
        self, method: str, head: bytes, body: Body, length: int | None
    ) -> tuple[Connection, Answer]:
        conn = self._pool.idle() or await self._pool.acquire()
        try:
            return conn, await self._attempt(conn, method, head, body, length)
        except _Stale as stale:
            if stale.sent and not _replayable(method, body):
                raise UpstreamUnavailable("upstream unavailable: connection closed") from None
        conn = await self._pool.acquire(fresh=True)
        return conn, await self._attempt(conn, method, head, body, length)

    async def _attempt(
        self, conn: Connection, method: str, head: bytes, body: Body, length: int | None
    ) -> Answer:
        conn.start(head_only=method == "HEAD")
        try:
            if conn.closed:  # closed before a byte went out
                raise _Stale(sent=False)
            if body is None or type(body) is bytes:  # the usual case: no coroutine to write
                if not conn.send_now(head + body if body else head):
                    await conn.send(b"", None, length)  # nothing more to write: it drains
            else:
                await conn.send(head, body, length)
            return await conn.answer()
        except BaseException:
            self._pool.release(conn)
            raise

    async def call(self, request: UpstreamRequest, max_answer: int) -> UpstreamResult:
        """Perform a job's request; failures come back as a result with an error."""
        return await buffered_call(self, request, max_answer)

    async def get_status(self, path: str, headers: Headers) -> int | None:
        """Status of a GET (status probes); None when the upstream gives no answer."""
        return await status_of(self, path, headers)

    async def close(self) -> None:
        self._pool.close()
