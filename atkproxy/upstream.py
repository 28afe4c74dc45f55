"""What every upstream client shares: the error tree, the streamed answer, buffered reads.

Exceptions raised toward the proxy:

    UpstreamError                 the upstream gave no usable answer
    ├── UpstreamUnavailable       refused, reset, closed mid-way (-> 502)
    │   └── UpstreamNotReached    the request certainly never reached the upstream: refused,
    │                             connect timeout, no connection to be had (-> 502; a job may
    │                             simply run again later)
    ├── UpstreamTimeout           nothing within upstream.timeout (-> 504)
    └── AnswerTooLarge            a job's answer over async.max_result (-> 502)
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from multidict import CIMultiDictProxy

from .budget import Reservation, reserve_answer
from .headers import response_headers
from .jobs import Headers, UpstreamRequest, UpstreamResult

CHUNK = 64 * 1024

Body = bytes | AsyncIterable[bytes] | None


class UpstreamError(Exception):
    status = 502


class UpstreamUnavailable(UpstreamError):
    status = 502


class UpstreamNotReached(UpstreamUnavailable):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class AnswerTooLarge(UpstreamError):
    status = 502


class Answer(Protocol):
    """An upstream response whose body is still to be read."""

    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def headers(self) -> CIMultiDictProxy[str]: ...
    @property
    def pairs(self) -> Headers:
        """The headers as a list, as they came."""

    @property
    def complete(self) -> bool:
        """The whole body has arrived: `ready_body()` has it."""

    def ready_body(self) -> bytes: ...
    def chunks(self) -> AsyncIterator[bytes]: ...


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def failed_result(exc: UpstreamError) -> UpstreamResult:
    """What the sync call would have answered when the upstream gave no answer."""
    headers = [("Content-Type", "application/json")]
    body = error_body(exc.status, str(exc))
    not_sent = isinstance(exc, UpstreamNotReached)
    return UpstreamResult(exc.status, headers, body, error=str(exc), not_sent=not_sent)


def declared_length(pairs: Headers) -> int | None:
    """The body length the answer's headers promise; None when they promise none (chunked,
    no Content-Length, or Content-Lengths that disagree or do not parse)."""
    lengths = set()
    for name, value in pairs:
        lower = name.lower()
        if lower == "transfer-encoding":
            return None
        if lower == "content-length":
            lengths.add(value.strip())
    if len(lengths) != 1:
        return None
    [text] = lengths
    return int(text) if text.isascii() and text.isdigit() else None


def _too_large(limit: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"upstream answer exceeds async.max_result ({limit} bytes)")


async def read_limited(answer: Answer, limit: int) -> bytes:
    """The whole answer, which a job records; one larger than `limit` is refused.

    The body is held once: every extra full copy of a large answer is paid by every job
    running at the same time. An answer with a Content-Length over `limit` is refused
    before its body is read; one within it is read into one buffer of that size, made
    before the first byte arrives. Without a length the buffer grows as the chunks come (a
    list of chunks joined at the end would hold the answer twice at that moment). The
    buffer is a BytesIO because its getvalue() hands over the bytes object it wrote into
    (CPython's copy-on-write BytesIO): bytes with no copy, where bytes(bytearray) copies."""
    length = declared_length(answer.pairs)
    if length is not None and length > limit:
        raise _too_large(limit)
    # the job's share of async.max_answer_memory (budget.py): with a length, taken before
    # a byte of body is read (meanwhile the upstream is not read: backpressure); without
    # one, counted as the body grows. Held until the job task ends, unless the read fails.
    reservation = await reserve_answer(length or 0, wait=bool(length))
    try:
        return await _read_into_one_buffer(answer, limit, length, reservation)
    except BaseException:
        reservation.release()
        raise


async def _read_into_one_buffer(
    answer: Answer, limit: int, length: int | None, reservation: Reservation
) -> bytes:
    body = io.BytesIO()
    if length:
        body.seek(length - 1)
        body.write(b"\0")  # sizes the buffer once
        body.seek(0)
    filled = 0
    async for chunk in answer.chunks():
        filled += len(chunk)
        if filled > limit:
            raise _too_large(limit)
        if length is None:
            reservation.extend(len(chunk))
        body.write(chunk)
    if length is not None and filled < length:  # fewer bytes than promised (HEAD, 204, 304)
        body.truncate(filled)
        reservation.shrink_to(filled)
    return body.getvalue()


class Streaming(Protocol):
    """An upstream client: http1.Http1Upstream, or aioclient.AiohttpUpstream (the reference)."""

    def stream(
        self, method: str, path_qs: str, headers: Headers, body: Body
    ) -> AbstractAsyncContextManager[Answer]: ...


async def buffered_call(
    client: Streaming, request: UpstreamRequest, max_answer: int
) -> UpstreamResult:
    """Perform a job's request; failures come back as a result with an error."""
    try:
        async with client.stream(
            request.method, request.path_qs, request.headers, request.body
        ) as answer:
            body = await read_limited(answer, max_answer)
            return UpstreamResult(answer.status, response_headers(answer.pairs), body)
    except UpstreamError as exc:
        return failed_result(exc)


async def status_of(client: Streaming, path: str, headers: Headers) -> int | None:
    """Status of a GET (status probes); None when the upstream gives no answer."""
    try:
        async with client.stream("GET", path, headers, None) as answer:
            return answer.status
    except UpstreamError:
        return None
