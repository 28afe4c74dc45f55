"""The catch-all handler: async requests are accepted, everything else passes through."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import EllipsisType

import structlog
from aiohttp import web
from multidict import CIMultiDict

from .accept import ASYNC_METHODS, requested_mode
from .errors import Rejected, json_error
from .forwarded import Network
from .headers import forward_headers, response_headers
from .http1 import Http1Upstream
from .keys import ACCEPTOR, METRICS, SETTINGS, UPSTREAM
from .limits import within
from .metrics import Metrics
from .upstream import CHUNK, Answer, Body, UpstreamError

log = structlog.get_logger("atkproxy.proxy")
NO_BODY = frozenset({204, 304})


async def handle(request: web.Request) -> web.StreamResponse:
    try:
        mode = requested_mode(request.headers)
        if mode.is_async and request.method in ASYNC_METHODS:
            return await request.app[ACCEPTOR].accept(request, mode)
        return await PassThrough.of(request.app)(request)
    except Rejected as exc:
        return rejected(request, exc)


def rejected(request: web.BaseRequest, exc: Rejected) -> web.Response:
    """The JSON answer to a refused request, logged unless it was already."""
    if not exc.logged:
        log.warning(
            "request rejected",
            status=exc.status,
            reason=exc.message,
            method=request.method,
            path=request.path,
        )
    return json_error(exc.status, exc.message, exc.retry_after)


@dataclass(frozen=True, slots=True)
class PassThrough:
    """Relays a request to the upstream and streams its answer back. It is served from the
    application and from the server's dispatcher, where `request.app` is not there: it holds
    what it needs. `trusted`: the peers whose forwarding headers are kept (forwarded.py)."""

    upstream: Http1Upstream
    trusted: Sequence[Network]
    metrics: Metrics
    body_timeout: float  # a small body is read before the upstream is dialled, within this

    @classmethod
    def of(cls, app: web.Application) -> PassThrough:
        listen = app[SETTINGS].listen
        return cls(app[UPSTREAM], listen.trusted_proxies, app[METRICS], listen.body_timeout)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        pairs = request.headers.items()
        host, trusted = request.host, self.trusted
        headers = forward_headers(pairs, request.remote, request.scheme, host, trusted)
        body = request_body(request)
        try:
            if body is ...:  # a small body still coming: read first, within the time allowed
                body = await within(self.body_timeout, "request body", request.read())
        except Rejected as exc:  # a slow client: it holds no upstream connection meanwhile
            log.warning("request rejected", status=exc.status, reason=exc.message,
                        method=request.method, path=request.path)  # fmt: skip
            response = json_error(exc.status, exc.message)
            response.force_close()  # the rest of its body is not waited for
            return response
        started = time.perf_counter()
        upstream = self.upstream
        try:
            conn, answer = await upstream.exchange(request.method, request.raw_path, headers, body)
        except UpstreamError as exc:
            return upstream_failed(request, exc)
        try:
            self.metrics.upstream_answered(started)  # its headers: the latency
            if answer.complete and answer.status not in NO_BODY and request.method != "HEAD":
                return whole(answer)  # all of it has arrived: head and body in one write
            return await relay(request, answer)
        except UpstreamError as exc:
            return upstream_failed(request, exc)
        finally:
            upstream.release(conn)


def upstream_failed(request: web.Request, exc: UpstreamError) -> web.Response:
    # a client whose body stopped coming: not the upstream's fault
    failure(request.method, request.path, None if client_gone(request) else exc)
    return json_error(exc.status, str(exc))


def failure(method: str, path: str, exc: UpstreamError | None, mid_answer: bool = False) -> None:
    """The one line for a pass-through request left unanswered, on either path: the client
    went away (`exc` None, an info line), or the upstream failed before its answer's head or
    after it (`mid_answer`)."""
    if exc is None:
        log.info("client went away", method=method, path=path)
    elif mid_answer:
        log.warning("upstream failed mid-answer", reason=str(exc), method=method, path=path)
    else:
        log.warning("upstream error", status=exc.status, reason=str(exc), method=method,
                    path=path)  # fmt: skip


def request_body(request: web.Request) -> Body | EllipsisType:
    """What goes upstream as the body, when nothing needs waiting for: none, a stream (a
    large body, or one of unknown length), or a small body that came in with the head (the
    usual case; it goes upstream in one write). `...` for a small body still coming: it is
    read first, so that a slow one holds no upstream connection while it comes."""
    if not request.body_exists:
        return None
    length = request.content_length
    if length is None or length > CHUNK:
        return request.content.iter_chunked(CHUNK)
    if request.content.is_eof():
        return request.content.read_nowait()
    return ...


def whole(answer: Answer) -> web.Response:
    """An answer that has all arrived, to go to the client in one write."""
    headers = response_headers(answer.pairs)
    return web.Response(
        status=answer.status, reason=answer.reason, headers=headers, body=answer.ready_body()
    )


async def relay(request: web.Request, answer: Answer) -> web.StreamResponse:
    """Stream the upstream's answer to the client; past its start, a failure cuts the line."""
    headers = response_headers(answer.pairs)
    response = web.StreamResponse(
        status=answer.status, reason=answer.reason, headers=CIMultiDict(headers)
    )
    try:
        await response.prepare(request)
        async for chunk in answer.chunks():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        failure(request.method, request.path, None)
    except UpstreamError as exc:
        failure(request.method, request.path, exc, mid_answer=True)
        if request.transport is not None:
            request.transport.close()
    return response


def client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()
