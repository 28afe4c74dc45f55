"""Which reads the front door serves itself (plain.py): a table of requests, no event loop."""

from __future__ import annotations

import pytest

from atkproxy.plain import PlainReader, PlainRequest

HEAD = b"GET /a?b=1 HTTP/1.1\r\nHost: svc\r\n"


def post(body: bytes, *extra: bytes) -> bytes:
    return b"POST /o HTTP/1.1\r\nHost: svc\r\n" + b"".join(extra) + \
        b"Content-Length: %d\r\n\r\n%b" % (len(body), body)  # fmt: skip


def read(data: bytes) -> PlainRequest | None:
    return PlainReader("/_atk/").read(data)


@pytest.mark.parametrize(
    ("data", "method", "target", "body", "keep"),
    [
        pytest.param(HEAD + b"\r\n", "GET", "/a?b=1", None, True, id="get"),
        pytest.param(post(b'{"a": 1}'), "POST", "/o", b'{"a": 1}', True, id="post"),
        pytest.param(post(b""), "POST", "/o", None, True, id="empty-body"),
        pytest.param(post(b"x" * 65536), "POST", "/o", b"x" * 65536, True, id="64-KiB-body"),
        pytest.param(HEAD + b"Connection: close\r\n\r\n", "GET", "/a?b=1", None, False,
                     id="closing"),
        pytest.param(b"HEAD /_atkx HTTP/1.1\r\nhost: s\r\n\r\n", "HEAD", "/_atkx", None, True,
                     id="beside-the-prefix"),
        pytest.param(HEAD + b"X-ATK-Callback: http://r/cb\r\n\r\n", "GET", "/a?b=1", None, True,
                     id="other-x-atk-headers-are-dropped-later-not-routed"),
    ],
)  # fmt: skip
def test_plain_requests(
    data: bytes, method: str, target: str, body: bytes | None, keep: bool
) -> None:
    request = read(data)
    assert request is not None
    assert (request.method, request.target, request.body, request.keep) == (
        method, target, body, keep)  # fmt: skip
    assert request.host is not None


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(HEAD, id="head-not-complete"),
        pytest.param(post(b"abc")[:-1], id="body-not-complete"),
        pytest.param(HEAD + b"\r\n" + HEAD + b"\r\n", id="two-requests"),
        pytest.param(HEAD + b"\r\n" + b"GET /", id="a-second-begun"),
        pytest.param(b"GET /a HTTP/1.0\r\nHost: svc\r\n\r\n", id="http-1.0"),
        pytest.param(b"GET /a HTTP/1.1\r\n\r\n", id="no-host"),
        pytest.param(HEAD + b"Host: other\r\n\r\n", id="two-hosts"),
        pytest.param(HEAD + b"User-Agent: a\r\nuser-agent: b\r\n\r\n", id="a-repeated-singleton"),
        pytest.param(b"GET /_atk/health HTTP/1.1\r\nHost: s\r\n\r\n", id="management-prefix"),
        pytest.param(b"GET /%5Fatk/health HTTP/1.1\r\nHost: s\r\n\r\n", id="an-escape"),
        pytest.param(b"GET http://svc/a HTTP/1.1\r\nHost: s\r\n\r\n", id="absolute-form"),
        pytest.param(b"OPTIONS * HTTP/1.1\r\nHost: s\r\n\r\n", id="asterisk-form"),
        pytest.param(HEAD + b"X-ATK-Mode: async\r\n\r\n", id="async"),
        pytest.param(HEAD + b"x-atk-mode: sync\r\n\r\n", id="any-mode-header"),
        pytest.param(HEAD + b"Prefer: respond-async\r\n\r\n", id="prefer"),
        pytest.param(HEAD + b"Expect: 100-continue\r\n\r\n", id="expect"),
        pytest.param(HEAD + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", id="upgrade"),
        pytest.param(
            b"POST /o HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(post(b"x" * 65537), id="over-64-KiB"),
        pytest.param(post(b"a", b"Content-Length: 1\r\n"), id="two-lengths"),
        pytest.param(b"GET /a HTTP/1.1\r\nHost: s\r\nContent-Length: +1\r\n\r\na", id="bad-length"),
        pytest.param(b"NOT HTTP\r\n\r\n", id="not-http"),
        pytest.param(b"", id="nothing"),
    ],
)
def test_what_goes_to_aiohttps_path(data: bytes) -> None:
    assert read(data) is None


def test_a_connection_reads_request_after_request() -> None:
    reader = PlainReader("/_atk/")
    first = reader.read(post(b"1"))
    second = reader.read(HEAD + b"\r\n")
    assert first is not None and second is not None and first is not second
    assert (first.body, second.body, second.method) == (b"1", None, "GET")
