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

import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from multidict import CIMultiDictProxy

from .jobs import Headers, UpstreamResult

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


async def read_limited(answer: Answer, limit: int) -> bytes:
    """The whole answer, which a job records; one larger than `limit` is refused."""
    body = bytearray()
    async for chunk in answer.chunks():
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge(f"upstream answer exceeds async.max_result ({limit} bytes)")
    return bytes(body)
