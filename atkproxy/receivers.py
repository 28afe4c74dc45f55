"""The callback client: POSTs to receivers over keep-alive HTTP/1.1 (http1.py), a pool per origin.

aiohttp's ClientSession was a large share of a job's CPU; this does only what a callback needs.
Receivers are many (each client names its own), so pools are kept per origin (scheme, host,
port), at most `max_origins` of them: the least recently used idle one is closed to make room,
and one unused for `idle` seconds is closed when the client is next used. Every new connection
is dialled through the destination policy (dial.py); a pooled one was checked when dialled.

An attempt is bounded as a whole by `timeout` (connect, send, answer). No redirect is followed,
no cookie kept, nothing decompressed. The status line and headers decide; the receiver's body is
not read (it could be endless): the connection is closed instead, unless the body is small,
framed by a Content-Length, and arrives within the attempt's time, so it can be reused.

The body goes out without a copy of it: a small one in the request's one write, a large one
in slices of itself, each written when the transport has room for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import cast

from yarl import URL

from .destinations import Policy, url_port
from .dial import BadAnswerError, Lookup, ServerDisconnectedError, dial, system_lookup
from .headers import Pairs
from .http1 import Answer, Connection, Pool, _Stale, request_head
from .upstream import UpstreamError, UpstreamNotReached, UpstreamTimeout

ONE_WRITE = 64 * 1024  # a body up to this size goes out with the head, in one write
SLICE = 256 * 1024  # a larger one in slices of this size, each after the transport drained
SMALL_ANSWER = 64 * 1024  # a receiver's body read (to keep the connection) up to this size
MAX_ORIGINS = 256
IDLE = 60.0  # seconds after which an unused origin's connections are closed

Origin = tuple[str, str, int]


@dataclass(slots=True, eq=False)
class _Receiver:
    pool: Pool
    busy: int = 0  # attempts under way: a pool with any is not closed
    used: float = field(default=0.0)


class CallbackClient:
    """POST to callback receivers; one keep-alive pool per origin."""

    def __init__(
        self,
        timeout: float,
        policy: Policy,
        ssl_context: ssl.SSLContext | None = None,  # https: the system's trust store if None
        per_origin: int = 32,
        max_origins: int = MAX_ORIGINS,
        idle: float = IDLE,
        lookup: Lookup = system_lookup,
        clock: Callable[[], float] = time.monotonic,  # for idle origins; tests move it
    ) -> None:
        self._timeout = timeout
        self._clock = clock
        self._policy = policy
        self._ssl = ssl_context
        self._per_origin = per_origin
        self._max_origins = max_origins
        self._idle = idle
        self._lookup = lookup
        self._receivers: OrderedDict[Origin, _Receiver] = OrderedDict()
        self._swept = 0.0

    async def __aenter__(self) -> CallbackClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def origins(self) -> int:
        """Origins with a pool now (bounded by `max_origins` while none is busy)."""
        return len(self._receivers)

    async def post(self, url: URL, headers: Pairs, body: bytes) -> tuple[int, str | None]:
        """The receiver's status and Retry-After; raises CallbackClientError or TimeoutError
        (nothing within `timeout`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        receiver = self._receiver(url, self._clock())
        receiver.busy += 1
        try:
            async with asyncio.timeout_at(deadline):
                with _translated():
                    conn, answer = await self._exchange(receiver.pool, url, headers, body)
            status, retry_after = answer.status, _header(answer, "retry-after")
            await _settle(receiver.pool, conn, answer, deadline)
            return status, retry_after
        finally:
            receiver.busy -= 1
            receiver.used = self._clock()

    def _receiver(self, url: URL, now: float) -> _Receiver:
        origin = (url.scheme, (url.raw_host or "").lower(), url_port(url))
        if now - self._swept >= self._idle / 4:
            self._sweep(now)
        receiver = self._receivers.get(origin)
        if receiver is None:
            self._make_room()
            receiver = self._receivers[origin] = _Receiver(self._pool(url, origin))
        else:
            self._receivers.move_to_end(origin)
        receiver.used = now
        return receiver

    def _pool(self, url: URL, origin: Origin) -> Pool:
        scheme, host, port = origin
        context = None
        if scheme == "https":
            if self._ssl is None:  # made once: loading the system's CAs is slow
                self._ssl = ssl.create_default_context()
            context = self._ssl
        opener = partial(
            dial, host=host, port=port, policy=self._policy, context=context, lookup=self._lookup
        )
        # a connection's own waits are bounded like the attempt; the attempt's bound decides
        return Pool(url, self._per_origin, self._timeout, self._timeout, context, opener)

    def _sweep(self, now: float) -> None:
        """Close the origins unused for `idle` seconds."""
        self._swept = now
        for origin, receiver in list(self._receivers.items()):
            if not receiver.busy and now - receiver.used >= self._idle:
                self._drop(origin)

    def _make_room(self) -> None:
        """Close the least recently used idle origins while there are `max_origins`; busy ones
        stay, over the bound if they must."""
        for origin, receiver in list(self._receivers.items()):
            if len(self._receivers) < self._max_origins:
                break
            if not receiver.busy:
                self._drop(origin)

    def _drop(self, origin: Origin) -> None:
        self._receivers.pop(origin).pool.close()

    async def _exchange(
        self, pool: Pool, url: URL, headers: Pairs, body: bytes
    ) -> tuple[Connection, Answer]:
        """A connection and the answer's head; a pooled connection that the receiver closed
        before answering is replaced once (a callback may arrive twice: webhook-id tells)."""
        head = _head(url, headers, body)
        conn = pool.idle() or await pool.acquire()
        try:
            return conn, await _attempt(pool, conn, head, body)
        except _Stale:
            pass
        conn = await pool.acquire(fresh=True)
        return conn, await _attempt(pool, conn, head, body)

    async def close(self) -> None:
        for origin in list(self._receivers):
            self._drop(origin)


def _head(url: URL, headers: Pairs, body: bytes) -> bytes:
    head, _ = request_head("POST", url.raw_path_qs, url.host_port_subcomponent or "", headers, body)
    return head


async def _attempt(pool: Pool, conn: Connection, head: bytes, body: bytes) -> Answer:
    conn.start(head_only=False)
    try:
        if conn.closed:  # closed before a byte went out
            raise _Stale(sent=False)
        if len(body) <= ONE_WRITE:
            if not conn.send_now(head + body):
                await conn.send(b"", None, None)  # nothing more to write: it drains
        else:
            await conn.send(head, _slices(body), len(body))
        return await conn.answer()
    except BaseException:
        pool.release(conn)
        raise


def _slices(body: bytes) -> AsyncIterable[bytes]:
    """`body` in views of SLICE bytes: the transport never holds a copy of all of it."""

    async def views() -> AsyncIterator[memoryview]:
        whole = memoryview(body)
        for start in range(0, len(whole), SLICE):
            yield whole[start : start + SLICE]

    return cast(AsyncIterable[bytes], views())  # the transport writes views as bytes


async def _settle(pool: Pool, conn: Connection, answer: Answer, deadline: float) -> None:
    """Give the connection back: kept when the answer's body is in (or small and framed, and
    here before the deadline), else closed."""
    try:
        if not answer.complete and _small_framed(answer):
            with contextlib.suppress(UpstreamError, TimeoutError):
                async with asyncio.timeout_at(deadline):
                    async for _ in answer.chunks():
                        pass
    finally:
        pool.release(conn)


def _small_framed(answer: Answer) -> bool:
    length = _header(answer, "content-length")
    return length is not None and length.strip().isdigit() and int(length) <= SMALL_ANSWER


def _header(answer: Answer, name: str) -> str | None:
    return next((value for key, value in answer.pairs if key.lower() == name), None)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """http1.py's errors (worded for the upstream) as the callback client's."""
    try:
        yield
    except UpstreamTimeout:
        raise TimeoutError from None
    except _Stale:
        raise ServerDisconnectedError("the receiver closed the connection") from None
    except UpstreamNotReached:  # all of the origin's connections busy for the whole attempt
        raise TimeoutError from None
    except UpstreamError as exc:
        text = str(exc).removeprefix("upstream unavailable: ")
        if text == "connection closed":
            raise ServerDisconnectedError("the receiver closed the connection") from None
        raise BadAnswerError(text) from None
