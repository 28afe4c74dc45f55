"""The front door's answer heads (front.py), as aiohttp writes them: what is kept, dropped and
added for each kind of answer."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from atkproxy import front
from atkproxy.jobs import Headers

DATE = ("Date", "Mon, 30 Nov 2026 00:00:00 GMT")


@dataclass
class Answered:
    status: int
    pairs: Headers = field(default_factory=list)
    reason: str | None = "OK"


def lines(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The status line and the header pairs of `head`; the Date is checked and left out."""
    assert head.endswith(b"\r\n\r\n")
    status, *rest = head[:-4].decode().split("\r\n")
    pairs = [(k, v) for k, _, v in (line.partition(": ") for line in rest)]
    assert sum(k == "Date" for k, _ in pairs) == 1
    return status, [p for p in pairs if p[0] != "Date"]


SERVER = ("Server", "atkproxy")


@pytest.fixture(autouse=True)
def server_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiohttp import web_response

    monkeypatch.setattr(web_response, "SERVER_SOFTWARE", "atkproxy")


@pytest.mark.parametrize(
    ("answer", "keep", "length", "empty", "status", "pairs"),
    [
        pytest.param(
            Answered(200, [("Content-Type", "a/b"), ("Content-Length", "3")]), True, 3, False,
            "HTTP/1.1 200 OK", [("Content-Type", "a/b"), ("Content-Length", "3"), SERVER],
            id="whole",
        ),
        pytest.param(
            Answered(200, [("Content-Length", "9")]), True, 3, False,
            "HTTP/1.1 200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", "3"), SERVER],
            id="the-length-sent-not-the-upstreams-and-a-type-for-a-body-without-one",
        ),
        pytest.param(
            Answered(200, [("Content-Length", "0")]), True, 0, False,
            "HTTP/1.1 200 OK", [("Content-Length", "0"), SERVER], id="empty-body-no-type",
        ),
        pytest.param(
            Answered(200, [("Transfer-Encoding", "chunked"), ("X", "1")]), True, None, False,
            "HTTP/1.1 200 OK",
            [("X", "1"), ("Content-Type", "application/octet-stream"),
             ("Transfer-Encoding", "chunked"), SERVER],
            id="chunked",
        ),
        pytest.param(
            Answered(200, [("Content-Length", "42")]), True, None, True,
            "HTTP/1.1 200 OK", [("Content-Length", "42"), SERVER], id="head-keeps-the-length",
        ),
        pytest.param(
            Answered(204, [("Content-Length", "4"), ("X", "1")], "No Content"), True, None, True,
            "HTTP/1.1 204 No Content", [("X", "1"), SERVER], id="204-drops-the-length",
        ),
        pytest.param(
            Answered(304, [("Content-Length", "4"), ("ETag", '"e"')], "Not Modified"), True,
            None, True, "HTTP/1.1 304 Not Modified", [("ETag", '"e"'), SERVER],
            id="304-drops-the-length",
        ),
        pytest.param(
            Answered(200, [("Content-Length", "2")]), False, 2, False,
            "HTTP/1.1 200 OK",
            [("Content-Type", "application/octet-stream"), ("Content-Length", "2"), SERVER,
             ("Connection", "close")],
            id="closing",
        ),
        pytest.param(
            Answered(200, [("Server", "up/1"), DATE, ("Connection", "X-P"), ("X-P", "s"),
                           ("Keep-Alive", "5"), ("Content-Length", "2")]), True, 2, False,
            "HTTP/1.1 200 OK",
            [("Server", "up/1"), ("Content-Type", "application/octet-stream"),
             ("Content-Length", "2")],
            id="upstream-server-and-date-kept-hop-by-hop-dropped",
        ),
        pytest.param(
            Answered(201, [("Content-Length", "0")], "Made It"), True, 0, False,
            "HTTP/1.1 201 Made It", [("Content-Length", "0"), SERVER], id="reason-as-given",
        ),
        pytest.param(
            Answered(418, [("Content-Length", "0")], None), True, 0, False,
            "HTTP/1.1 418 I'm a Teapot", [("Content-Length", "0"), SERVER], id="no-reason",
        ),
        pytest.param(
            Answered(299, [("Content-Length", "0")], ""), True, 0, False,
            "HTTP/1.1 299 ", [("Content-Length", "0"), SERVER], id="empty-reason",
        ),
    ],
)  # fmt: skip
def test_answer_heads(
    answer: Answered,
    keep: bool,
    length: int | None,
    empty: bool,
    status: str,
    pairs: list[tuple[str, str]],
) -> None:
    head = front._head(answer, keep, length, empty=empty)  # type: ignore[arg-type]
    got_status, got = lines(head)
    assert got_status == status
    assert got == pairs
    if answer.pairs and DATE in answer.pairs:
        assert f"{DATE[0]}: {DATE[1]}".encode() in head


@pytest.mark.parametrize(
    ("target", "path"),
    [("/a/b?x=1&y=2", "/a/b"), ("/a", "/a"), ("/?", "/"), ("/a?b?c", "/a")],
)
def test_the_logged_path_leaves_the_query_out(target: str, path: str) -> None:
    assert front._path(target) == path
