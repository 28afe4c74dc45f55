"""Header hygiene in one walk (headers.py): the cases the multidict wrappers in
test_forward.py do not reach."""

from __future__ import annotations

import pytest

from atkproxy.headers import forward_headers, response_headers
from atkproxy.jobs import Headers


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param([("Content-Type", "a/b"), ("Content-Length", "3")], None, id="kept"),
        pytest.param(
            [("Connection", "close"), ("Transfer-Encoding", "chunked"), ("X", "1")],
            [("X", "1")],
            id="close-and-chunked-dropped",
        ),
        pytest.param(
            [("X-Late", "1"), ("Connection", "x-late"), ("Y", "2")],
            [("Y", "2")],
            id="named-after-it-appears",
        ),
        pytest.param([("X-ATK-Job", "j")], None, id="x-atk-kept-in-answers"),
    ],
)
def test_response_headers(given: Headers, kept: Headers | None) -> None:
    assert response_headers(given) == (given if kept is None else kept)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            [("X-Forwarded-For", "1.1.1.1"), ("Connection", "X-Forwarded-For")],
            [("X-Forwarded-For", "10.0.0.9"), ("X-Forwarded-Proto", "http")],
            id="forwarded-for-named-in-connection",
        ),
        pytest.param(
            [("X-Forwarded-Host", "evil"), ("HOST", "h"), ("A", "1")],
            [("A", "1"), ("X-Forwarded-For", "10.0.0.9"), ("X-Forwarded-Proto", "http")],
            id="forwarded-host-not-trusted-without-host",
        ),
    ],
)
def test_forward_headers(given: Headers, expected: Headers) -> None:
    assert forward_headers(given, "10.0.0.9", "http", None) == expected
