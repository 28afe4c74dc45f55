"""Which requests are plain pass-through: what the front door (front.py) serves itself.

`PlainReader.read` parses one read's bytes with httptools and gives the request they hold when
they hold exactly one whole request that needs nothing of aiohttp's path: HTTP/1.1, an
origin-form target with no `%` escape outside the management prefix (the prefix is matched on
the decoded path there), a Host header, no Expect, Upgrade, Transfer-Encoding, X-ATK-Mode or
Prefer, no repeated singleton header (aiohttp refuses those), and a body of at most 64 KiB.
Anything else, a request split across reads or two in one read included, gives None: the
caller hands the connection and these bytes to aiohttp's protocol, and drops the reader.
"""

from __future__ import annotations

import httptools
from aiohttp.http_parser import SINGLETON_HEADERS

from .jobs import Headers
from .upstream import CHUNK

# request headers that only aiohttp's path handles (the opt-in and its refusals, 100-continue,
# upgrades, chunked bodies)
_ROUTED = frozenset({b"expect", b"upgrade", b"transfer-encoding", b"x-atk-mode", b"prefer"})
_SINGLETON = frozenset(name.encode() for name in SINGLETON_HEADERS)


class PlainRequest:
    """One request as httptools gave it."""

    __slots__ = ("body", "host", "keep", "method", "pairs", "plain", "seen", "target", "url")

    def __init__(self) -> None:
        self.url = b""
        self.target = ""
        self.method = ""
        self.pairs: Headers = []
        self.body: bytes | None = None
        self.host: str | None = None
        self.keep = True  # the client keeps the connection (HTTP/1.1 and no Connection: close)
        self.plain = True  # nothing so far that only aiohttp's path handles
        self.seen: set[bytes] = set()


class PlainReader:
    """Reads a connection's requests while they are plain pass-through."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix  # the management prefix: its requests go to the application
        self._parser = httptools.HttpRequestParser(self)
        self._request = PlainRequest()
        self._parts: list[bytes] = []
        self._messages = 0  # begun in the current read
        self._complete = False

    def read(self, data: bytes) -> PlainRequest | None:
        """The request `data` holds when it is one whole plain pass-through request."""
        self._messages, self._complete = 0, False
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            return None  # aiohttp's protocol answers it (an upgrade is not an HttpParserError)
        if self._messages != 1 or not self._complete or not self._request.plain:
            return None
        return self._servable(self._request)

    def _servable(self, request: PlainRequest) -> PlainRequest | None:
        target = request.url.decode("utf-8", "surrogateescape")
        if not target.startswith("/") or "%" in target or target.startswith(self._prefix):
            return None
        if request.host is None or self._parser.get_http_version() != "1.1":
            return None
        request.target = target
        request.method = self._parser.get_method().decode("ascii", "surrogateescape")
        request.body = b"".join(self._parts) if self._parts else None
        return request

    # -- httptools' callbacks

    def on_message_begin(self) -> None:
        self._messages += 1
        if self._messages == 1:
            self._request, self._parts = PlainRequest(), []

    def on_url(self, url: bytes) -> None:
        self._request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        request, lower = self._request, name.lower()
        text = value.decode("utf-8", "surrogateescape")
        request.pairs.append((name.decode("utf-8", "surrogateescape"), text))
        if lower in _SINGLETON:
            if lower in request.seen or lower in _ROUTED:
                request.plain = False  # a repeat: aiohttp answers it 400
            request.seen.add(lower)
            if lower == b"host":
                request.host = text
            elif lower == b"content-length" and not (value.isdigit() and int(value) <= CHUNK):
                request.plain = False  # streamed by aiohttp's path
        elif lower in _ROUTED:
            request.plain = False

    def on_headers_complete(self) -> None:
        self._request.keep = self._parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self._parts.append(body)

    def on_message_complete(self) -> None:
        self._complete = True
