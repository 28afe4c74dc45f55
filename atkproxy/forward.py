"""The upstream client: header hygiene (pure helpers) and one I/O seam, `Upstream`.

Exceptions raised toward the proxy:

    UpstreamError                 the upstream gave no usable answer
    ├── UpstreamUnavailable       refused, reset, closed mid-way (-> 502)
    │   └── UpstreamNotReached    the request certainly never reached it: refused, no
    │                             connection within connect_timeout (a job tries again)
    ├── UpstreamTimeout           nothing within upstream.timeout (-> 504)
    └── AnswerTooLarge            a job's answer over async.max_result (-> 502)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from ssl import SSLContext

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .forwarded import Network, forwarding
from .jobs import Headers, UpstreamRequest, UpstreamResult

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
CHUNK = 64 * 1024


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


def _connection_listed(headers: Mapping[str, str]) -> set[str]:
    listed = ",".join(v for k, v in headers.items() if k.lower() == "connection")
    return {token.strip().lower() for token in listed.split(",") if token.strip()}


def hop_filtered(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """Headers fit to pass on: hop-by-hop ones and those named in Connection removed."""
    drop = HOP_BY_HOP | _connection_listed(headers)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in drop)


def upstream_headers(
    incoming: CIMultiDictProxy[str],
    peer: str | None,
    scheme: str,
    host: str | None,
    trusted: Sequence[Network] = (),
) -> CIMultiDict[str]:
    """Request headers for the upstream: no hop-by-hop, no X-ATK-*, X-Forwarded-* settled
    (the client's kept only from a peer in `trusted`: forwarded.py)."""
    headers = hop_filtered(incoming)
    for name in [k for k in headers if k.lower().startswith("x-atk-") or k.lower() == "host"]:
        headers.popall(name, None)
    return forwarding(headers, peer, scheme, host, trusted)


def header_pairs(headers: Iterable[tuple[str, str]]) -> Headers:
    return [(str(k), str(v)) for k, v in headers]


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def failed_result(exc: UpstreamError) -> UpstreamResult:
    """What the sync call would have answered when the upstream gave no answer."""
    headers = [("Content-Type", "application/json")]
    body = error_body(exc.status, str(exc))
    not_sent = isinstance(exc, UpstreamNotReached)
    return UpstreamResult(exc.status, headers, body, error=str(exc), not_sent=not_sent)


@asynccontextmanager
async def upstream_errors() -> AsyncIterator[None]:
    """Translate aiohttp's and asyncio's exceptions into UpstreamError, keeping the cause."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise UpstreamNotReached("upstream not reached within connect_timeout") from exc
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamNotReached(f"upstream not reached: {exc.__class__.__name__}") from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise UpstreamTimeout("upstream did not answer in time") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable(f"upstream unavailable: {exc.__class__.__name__}") from exc
    except OSError as exc:
        raise UpstreamUnavailable(f"upstream unavailable: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class Streamed:
    """An upstream response whose body is still to be read."""

    status: int
    headers: CIMultiDictProxy[str]
    response: aiohttp.ClientResponse

    async def chunks(self) -> AsyncIterator[bytes]:
        async with upstream_errors():
            async for chunk in self.response.content.iter_any():
                yield chunk


async def read_limited(answer: Streamed, limit: int) -> bytes:
    """The whole answer, which a job records; one larger than `limit` is refused."""
    body = bytearray()
    async for chunk in answer.chunks():
        body += chunk
        if len(body) > limit:
            raise AnswerTooLarge(f"upstream answer exceeds async.max_result ({limit} bytes)")
    return bytes(body)


Body = bytes | AsyncIterable[bytes] | None


class Upstream:
    """The one way to the backend: streaming for pass-through, buffered for jobs."""

    def __init__(
        self,
        base_url: str,
        timeout: float,
        connect_timeout: float,
        max_connections: int,
        ssl: SSLContext | None = None,  # None: verified against the system's CAs
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ssl=ssl or True),
            timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=timeout),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )

    def url(self, path_qs: str) -> URL:
        return URL(self.base_url + path_qs, encoded=True)

    @asynccontextmanager
    async def stream(
        self, method: str, path_qs: str, headers: CIMultiDict[str], body: Body
    ) -> AsyncIterator[Streamed]:
        async with upstream_errors():
            response = await self._session.request(
                method, self.url(path_qs), headers=headers, data=body, allow_redirects=False
            )
        try:
            yield Streamed(response.status, response.headers, response)
        finally:
            response.release()

    async def call(self, request: UpstreamRequest, max_answer: int) -> UpstreamResult:
        """Perform a job's request; failures come back as a result with an error."""
        headers = CIMultiDict(request.headers)
        try:
            async with self.stream(request.method, request.path_qs, headers, request.body) as r:
                body = await read_limited(r, max_answer)
                return UpstreamResult(r.status, header_pairs(hop_filtered(r.headers).items()), body)
        except UpstreamError as exc:
            return failed_result(exc)

    async def get_status(self, path: str, headers: Headers) -> int | None:
        """Status of a GET (status probes); None when the upstream gives no answer."""
        try:
            async with self.stream("GET", path, CIMultiDict(headers), None) as response:
                return response.status
        except UpstreamError:
            return None

    async def close(self) -> None:
        await self._session.close()
