"""The pure checks on async requests: header size, path segments, a repeated id parameter."""

from __future__ import annotations

import pytest
from multidict import MultiDict

from atkproxy.errors import Rejected
from atkproxy.limits import check_header_size, check_header_text, check_path, check_single_ids
from atkproxy.settings import IdSource


@pytest.mark.parametrize(
    "path",
    ["/registrations", "/a/b-c/d.e", "/a/%41b", "/a/..b", "/a/b.", "/a/%2E%2Ex", "/", "/a?x=../y"],
)
def test_paths_kept(path: str) -> None:
    check_path(path)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/a%2Fb", "encoded slash"),
        ("/a/b%2fc", "encoded slash"),
        ("/a/b%5Cc", "encoded slash"),
        ("/a/%252F", None),  # double-encoded: the upstream decodes once, to %2F: kept
        ("/..", "'.' or '..'"),
        ("/a/./b", "'.' or '..'"),
        ("/a/%2e/b", "'.' or '..'"),
        ("/%2E%2E/admin", "'.' or '..'"),
        ("/a/.%2E", "'.' or '..'"),
    ],
)
def test_paths_refused(path: str, reason: str | None) -> None:
    if reason is None:
        check_path(path)
        return
    with pytest.raises(Rejected, match=reason) as caught:
        check_path(path)
    assert caught.value.status == 400


def raw(n: int, size: int) -> list[tuple[bytes, bytes]]:
    return [(f"X-{i}".encode(), b"v" * size) for i in range(n)]


@pytest.mark.parametrize(
    ("headers", "limit", "refused"),
    [
        (raw(1, 10), 17, False),  # "X-0: " + 10 + CRLF = 17 bytes
        (raw(1, 10), 16, True),
        (raw(64, 1000), 64 * 1024, False),
        (raw(70, 1000), 64 * 1024, True),
        ([], 0, False),
    ],
)
def test_header_size(headers: list[tuple[bytes, bytes]], limit: int, refused: bool) -> None:
    if not refused:
        check_header_size(headers, limit)
        return
    with pytest.raises(Rejected) as caught:
        check_header_size(headers, limit)
    assert caught.value.status == 431


QUERY_ID = [IdSource.model_validate({"from": "query", "name": "businessKey"})]
PATH_ID = [IdSource.model_validate({"from": "path", "name": "businessKey"})]


@pytest.mark.parametrize(
    ("query", "sources", "refused"),
    [
        ([("businessKey", "a")], QUERY_ID, False),
        ([("businessKey", "a"), ("other", "b"), ("other", "c")], QUERY_ID, False),
        ([("businessKey", "a"), ("businessKey", "b")], QUERY_ID, True),
        ([("businessKey", "a"), ("businessKey", "a")], QUERY_ID, True),
        ([("businessKey", "a"), ("businessKey", "b")], PATH_ID, False),
    ],
)
def test_repeated_id_parameter(
    query: list[tuple[str, str]], sources: list[IdSource], refused: bool
) -> None:
    if not refused:
        check_single_ids(MultiDict(query), sources)
        return
    with pytest.raises(Rejected, match="given more than once"):
        check_single_ids(MultiDict(query), sources)


@pytest.mark.parametrize(
    ("name", "value", "refused"),
    [
        (b"X-A", b"plain", False),
        (b"X-A", "café ☕".encode(), False),
        (b"X-A", b"", False),
        (b"X-A", b"\xff\xfe\xc3(", True),
        (b"X-A", b"caf\xe9", True),  # latin-1
        (b"X-A", b"\xc3", True),  # a sequence cut short
        (b"X-A", b"\xed\xa0\x80", True),  # an encoded surrogate
        (b"X-\xff", b"v", True),
    ],
)
def test_header_text(name: bytes, value: bytes, refused: bool) -> None:
    headers = [(b"Host", b"h"), (name, value)]
    if refused:
        with pytest.raises(Rejected) as caught:
            check_header_text(headers)
        assert caught.value.status == 400
    else:
        check_header_text(headers)
