"""The catch-all handler: async requests are accepted, everything else passes through."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from .accept import ASYNC_METHODS, requested_mode
from .errors import Rejected, json_error
from .forward import CHUNK, Streamed, Upstream, UpstreamError, hop_filtered, upstream_headers
from .keys import ACCEPTOR, METRICS, UPSTREAM

log = structlog.get_logger("atkproxy.proxy")


async def handle(request: web.Request) -> web.StreamResponse:
    try:
        mode = requested_mode(request.headers)
        if mode.is_async and request.method in ASYNC_METHODS:
            return await request.app[ACCEPTOR].accept(request, mode)
        return await pass_through(request, request.app[UPSTREAM])
    except Rejected as exc:
        if not exc.logged:
            log.warning(
                "request rejected",
                status=exc.status,
                reason=exc.message,
                method=request.method,
                path=request.path,
            )
        return json_error(exc.status, exc.message, exc.retry_after)


async def pass_through(request: web.Request, upstream: Upstream) -> web.StreamResponse:
    headers = upstream_headers(request.headers, request.remote, request.scheme, request.host)
    body = request.content.iter_chunked(CHUNK) if request.body_exists else None
    try:
        started = time.perf_counter()
        async with upstream.stream(request.method, request.raw_path, headers, body) as answer:
            request.app[METRICS].upstream_answered(started)  # its headers: the latency
            return await relay(request, answer)
    except UpstreamError as exc:
        if client_gone(request):  # its body stopped coming: not the upstream's fault
            log.info("client went away", method=request.method, path=request.path)
        else:
            log.warning(
                "upstream error",
                status=exc.status,
                reason=str(exc),
                method=request.method,
                path=request.path,
            )
        return json_error(exc.status, str(exc))


async def relay(request: web.Request, answer: Streamed) -> web.StreamResponse:
    """Stream the upstream's answer to the client; past its start, a failure cuts the line."""
    response = web.StreamResponse(
        status=answer.status, reason=answer.response.reason, headers=hop_filtered(answer.headers)
    )
    try:
        await response.prepare(request)
        async for chunk in answer.chunks():
            await response.write(chunk)
        await response.write_eof()
    except ConnectionError:
        log.info("client went away", method=request.method, path=request.path)
    except UpstreamError as exc:
        log.warning(
            "upstream failed mid-answer", reason=str(exc), method=request.method, path=request.path
        )
        if request.transport is not None:
            request.transport.close()
    return response


def client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()
