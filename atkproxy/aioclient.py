"""The upstream client on aiohttp's ClientSession: the reference the fast client is tested
against (tests/integration/test_client_differential.py), with the same interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .headers import Pairs
from .jobs import Headers, UpstreamRequest, UpstreamResult
from .upstream import (
    Body,
    UpstreamNotReached,
    UpstreamTimeout,
    UpstreamUnavailable,
    buffered_call,
    status_of,
)


@asynccontextmanager
async def upstream_errors() -> AsyncIterator[None]:
    """Translate aiohttp's and asyncio's exceptions into UpstreamError, keeping the cause."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise UpstreamNotReached("upstream not reached in time") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout("upstream did not answer in time") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamNotReached(f"upstream unavailable: {exc.__class__.__name__}") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"upstream unavailable: {exc.__class__.__name__}") from exc
    except OSError as exc:
        raise UpstreamUnavailable(f"upstream unavailable: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class Streamed:
    """An upstream response whose body is still to be read."""

    status: int
    reason: str | None
    headers: CIMultiDictProxy[str]
    response: aiohttp.ClientResponse

    @property
    def pairs(self) -> Headers:
        return list(self.headers.items())

    complete = False  # aiohttp's client does not say

    def ready_body(self) -> bytes:
        raise NotImplementedError("aiohttp's client has no ready body: read chunks()")

    async def chunks(self) -> AsyncIterator[bytes]:
        async with upstream_errors():
            async for chunk in self.response.content.iter_any():
                yield chunk


class AiohttpUpstream:
    """The one way to the backend: streaming for pass-through, buffered for jobs."""

    def __init__(
        self, base_url: str, timeout: float, connect_timeout: float, max_connections: int
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections),
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=timeout),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    def url(self, path_qs: str) -> URL:
        return URL(self.base_url + path_qs, encoded=True)

    @asynccontextmanager
    async def stream(
        self, method: str, path_qs: str, headers: Pairs, body: Body
    ) -> AsyncIterator[Streamed]:
        async with upstream_errors():
            response = await self._session.request(
                method,
                self.url(path_qs),
                headers=CIMultiDict(headers),
                data=body,
                allow_redirects=False,
            )
        try:
            yield Streamed(response.status, response.reason, response.headers, response)
        finally:
            response.release()

    async def call(self, request: UpstreamRequest, max_answer: int) -> UpstreamResult:
        """Perform a job's request; failures come back as a result with an error."""
        return await buffered_call(self, request, max_answer)

    async def get_status(self, path: str, headers: Headers) -> int | None:
        """Status of a GET (status probes); None when the upstream gives no answer."""
        return await status_of(self, path, headers)

    async def close(self) -> None:
        await self._session.close()
