"""Pure request helpers: header hygiene (headers.py), the async opt-in and callback URL
checks (accept.py), and what the job API shows (management.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from atkproxy.accept import (
    Mode,
    callback_url,
    is_json,
    reply_body,
    reply_bytes,
    requested_mode,
)
from atkproxy.errors import Rejected
from atkproxy.headers import hop_filtered, upstream_headers
from atkproxy.jobs import (
    AtkStatus,
    Attempt,
    Headers,
    Job,
    JobState,
    UpstreamRequest,
    UpstreamResult,
)
from atkproxy.management import job_view, redacted_url
from atkproxy.routes import Resolved, RouteMatch, Target
from atkproxy.settings import Route
from atkproxy.upstream import (
    UpstreamError,
    UpstreamNotReached,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_body,
    failed_result,
)


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


# -- hop_filtered --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        pytest.param([("Accept", "*/*")], [("Accept", "*/*")], id="end-to-end-kept"),
        pytest.param(
            [
                ("Connection", "keep-alive"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "X-Sum"),
                ("Transfer-Encoding", "chunked"),
                ("Upgrade", "h2c"),
                ("Proxy-Authorization", "Basic x"),
                ("Proxy-Authenticate", "Basic"),
                ("Proxy-Connection", "close"),
                ("Trailers", "x"),
                ("A", "1"),
            ],
            [("A", "1")],
            id="hop-by-hop-removed",
        ),
        pytest.param(
            [("transfer-encoding", "chunked"), ("CONNECTION", "close"), ("A", "1")],
            [("A", "1")],
            id="hop-by-hop-any-case",
        ),
        pytest.param(
            [("Connection", "close, X-Hop"), ("x-hop", "1"), ("X-Kept", "2")],
            [("X-Kept", "2")],
            id="named-in-connection-removed",
        ),
        pytest.param(
            [
                ("Connection", "X-One"),
                ("connection", " x-two ,"),
                ("X-One", "1"),
                ("X-Two", "2"),
                ("X-Three", "3"),
            ],
            [("X-Three", "3")],
            id="named-in-repeated-connection",
        ),
        pytest.param(
            [("Accept", "a"), ("X-B", "1"), ("accept", "b"), ("ACCEPT", "c")],
            [("Accept", "a"), ("X-B", "1"), ("accept", "b"), ("ACCEPT", "c")],
            id="repeated-kept-in-order",
        ),
        pytest.param([], [], id="empty"),
    ],
)
def test_hop_filtered(given: Headers, kept: Headers) -> None:
    assert list(hop_filtered(headers(*given)).items()) == kept


def test_hop_filtered_takes_a_plain_multidict() -> None:
    given = CIMultiDict([("Connection", "close"), ("A", "1")])
    assert list(hop_filtered(given).items()) == [("A", "1")]


# -- upstream_headers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "peer", "scheme", "host", "expected"),
    [
        pytest.param(
            [("Accept", "*/*")],
            "10.0.0.9",
            "http",
            "proxy:8080",
            [
                ("Accept", "*/*"),
                ("X-Forwarded-For", "10.0.0.9"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "proxy:8080"),
            ],
            id="forwarded-headers-set",
        ),
        pytest.param(
            [
                ("X-ATK-Mode", "async"),
                ("x-atk-callback", "http://cb/"),
                ("X-Atk-Whatever", "1"),
                ("X-ATKX", "kept"),
                ("A", "1"),
            ],
            None,
            "https",
            None,
            [("X-ATKX", "kept"), ("A", "1"), ("X-Forwarded-Proto", "https")],
            id="x-atk-removed-any-case",
        ),
        pytest.param(
            [("Host", "proxy:8080"), ("A", "1")],
            None,
            "http",
            "proxy:8080",
            [("A", "1"), ("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "proxy:8080")],
            id="host-removed",
        ),
        pytest.param(
            [("X-Forwarded-For", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 3.3.3.3")],
            "10.0.0.9",
            "http",
            None,
            [("X-Forwarded-For", "10.0.0.9"), ("X-Forwarded-Proto", "http")],
            id="forwarded-for-of-an-untrusted-peer-replaced",  # forwarded.py: trusted peers
        ),
        pytest.param(
            [("X-Forwarded-For", "1.1.1.1")],
            None,
            "http",
            None,
            [("X-Forwarded-Proto", "http")],
            id="forwarded-for-dropped-without-peer",
        ),
        pytest.param(
            [("X-Forwarded-Proto", "http"), ("X-Forwarded-Host", "old")],
            None,
            "https",
            "new",
            [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "new")],
            id="forwarded-proto-and-host-replaced",
        ),
        pytest.param(
            [("Connection", "X-Secret"), ("X-Secret", "s"), ("Keep-Alive", "5")],
            None,
            "http",
            None,
            [("X-Forwarded-Proto", "http")],
            id="hop-by-hop-removed",
        ),
    ],
)
def test_upstream_headers(
    given: Headers, peer: str | None, scheme: str, host: str | None, expected: Headers
) -> None:
    assert list(upstream_headers(headers(*given), peer, scheme, host).items()) == expected


# -- failed_result and error_body ----------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "status", "not_sent"),
    [
        pytest.param(UpstreamTimeout("upstream did not answer in time"), 504, False, id="timeout"),
        pytest.param(
            UpstreamUnavailable("upstream unavailable: reset"), 502, False, id="unavailable"
        ),
        pytest.param(
            UpstreamNotReached("upstream unavailable: refused"), 502, True, id="not-reached"
        ),
        pytest.param(UpstreamError("no usable answer"), 502, False, id="base"),
    ],
)
def test_failed_result(exc: UpstreamError, status: int, not_sent: bool) -> None:
    result = failed_result(exc)
    assert (result.status, result.error, result.content_type, result.not_sent) == (
        status,
        str(exc),
        "application/json",
        not_sent,
    )
    assert json.loads(result.body) == {"error": str(exc), "status": status}


@pytest.mark.parametrize(
    ("status", "message"),
    [
        pytest.param(400, "bad", id="plain"),
        pytest.param(502, 'quote " and ünïcode', id="escaped"),
    ],
)
def test_error_body(status: int, message: str) -> None:
    assert json.loads(error_body(status, message)) == {"error": message, "status": status}


# -- requested_mode ------------------------------------------------------------------------

ASYNC = Mode(True)
SYNC = Mode(False)
PREFERRED = Mode(True, via_prefer=True)


@pytest.mark.parametrize(
    ("given", "mode"),
    [
        pytest.param([], SYNC, id="absent"),
        pytest.param([("X-ATK-Mode", "async")], ASYNC, id="async"),
        pytest.param([("X-ATK-Mode", "ASYNC")], ASYNC, id="ASYNC"),
        pytest.param([("x-atk-mode", " Async ")], ASYNC, id="name-any-case-value-blanks"),
        pytest.param([("X-ATK-Mode", "sync")], SYNC, id="sync"),
        pytest.param([("X-ATK-Mode", "SYNC")], SYNC, id="SYNC"),
        pytest.param([("Prefer", "respond-async")], PREFERRED, id="prefer"),
        pytest.param([("Prefer", "RESPOND-ASYNC")], PREFERRED, id="prefer-any-case"),
        pytest.param([("Prefer", "respond-async, wait=10")], PREFERRED, id="prefer-with-wait"),
        pytest.param([("Prefer", "wait=10, respond-async")], PREFERRED, id="prefer-second"),
        pytest.param([("Prefer", "respond-async; x=y")], PREFERRED, id="prefer-with-parameter"),
        # RFC 7240: after `;` come parameters of `wait`, not another preference
        pytest.param([("Prefer", "wait=5; respond-async")], SYNC, id="prefer-as-wait-parameter"),
        pytest.param(
            [("Prefer", "wait=5"), ("Prefer", "respond-async")], PREFERRED, id="two-prefer-headers"
        ),
        pytest.param([("Prefer", "return=minimal")], SYNC, id="other-preference"),
        pytest.param([("Prefer", "respond-asynchronously")], SYNC, id="prefer-lookalike"),
        pytest.param(
            [("X-ATK-Mode", "sync"), ("Prefer", "respond-async")],
            SYNC,
            id="mode-header-wins-over-prefer",
        ),
        pytest.param(
            [("X-ATK-Mode", "async"), ("Prefer", "respond-async")],
            ASYNC,
            id="mode-header-async-not-via-prefer",
        ),
    ],
)
def test_requested_mode(given: Headers, mode: Mode) -> None:
    assert requested_mode(headers(*given)) == mode


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("bogus", id="bogus"),
        pytest.param("", id="empty"),
        pytest.param("asynchronous", id="lookalike"),
        pytest.param("async,sync", id="list"),
    ],
)
def test_requested_mode_rejects(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        requested_mode(headers(("X-ATK-Mode", value), ("Prefer", "respond-async")))
    assert caught.value.status == 400
    assert caught.value.message == f"X-ATK-Mode must be 'async' or 'sync', got {value!r}"


# -- callback_url --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "url"),
    [
        pytest.param("http://cb.example/hook", "http://cb.example/hook", id="http"),
        pytest.param("https://cb.example:8443/h?x=1", "https://cb.example:8443/h?x=1", id="https"),
        pytest.param(" http://cb.example/hook ", "http://cb.example/hook", id="blanks-cut"),
        pytest.param("HTTP://CB.example/Hook", "http://cb.example/Hook", id="scheme-any-case"),
        pytest.param("http://10.0.0.7:9000/", "http://10.0.0.7:9000/", id="ip-and-port"),
    ],
)
def test_callback_url(value: str, url: str) -> None:
    assert callback_url(headers(("X-ATK-Callback", value))) == url


def test_no_callback_url() -> None:
    assert callback_url(headers(("X-ATK-Mode", "async"))) is None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("/relative/hook", id="relative"),
        pytest.param("cb.example/hook", id="no-scheme"),
        pytest.param("//cb.example/hook", id="scheme-relative"),
        pytest.param("ftp://cb.example/hook", id="ftp"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("mailto:ops@cb.example", id="mailto"),
        pytest.param("http://", id="no-host"),
        pytest.param("http:///hook", id="empty-host"),
        pytest.param("garbage", id="garbage"),
        pytest.param("http://[::1", id="unparsable"),
        pytest.param("", id="empty"),
    ],
)
def test_callback_url_rejects(value: str) -> None:
    with pytest.raises(Rejected) as caught:
        callback_url(headers(("X-ATK-Callback", value)))
    assert caught.value.status == 400
    assert caught.value.message.startswith("X-ATK-Callback refused: not ")


# -- is_json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        pytest.param("application/json", True, id="json"),
        pytest.param("application/json; charset=utf-8", True, id="with-charset"),
        pytest.param("Application/JSON", True, id="any-case"),
        pytest.param(" application/json ;x=1", True, id="blanks"),
        pytest.param("application/problem+json", True, id="plus-json"),
        pytest.param("application/vnd.api+json; v=1", True, id="vendor-plus-json"),
        pytest.param("text/plain", False, id="text"),
        pytest.param("application/jsonx", False, id="lookalike"),
        pytest.param("application/json-patch", False, id="json-prefix"),
        pytest.param("application/octet-stream", False, id="octets"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_json(content_type: str, expected: bool) -> None:
    assert is_json(content_type) is expected


# -- reply_body ----------------------------------------------------------------------------

START = RouteMatch(Route.model_validate({"path": "/{workflow}", "start": True}), {"workflow": "o"})
OPERATION = RouteMatch(Route.model_validate({"path": "/{workflow}/{id}"}), {"id": "i-1"})


@pytest.mark.parametrize(
    ("match", "doc", "body"),
    [
        pytest.param(
            START,
            {"name": "x", "n": 1},
            {"id": "i-1", "name": "x", "n": 1},
            id="start-model-with-id",
        ),
        pytest.param(
            START, {"id": "client", "name": "x"}, {"id": "i-1", "name": "x"}, id="start-id-replaced"
        ),
        pytest.param(START, {}, {"id": "i-1"}, id="start-empty-object"),
        pytest.param(START, None, {"id": "i-1"}, id="start-without-document"),
        pytest.param(START, [1, 2], {"id": "i-1"}, id="start-list-document"),
        pytest.param(OPERATION, {"name": "x"}, {"id": "i-1"}, id="operation-id-only"),
        pytest.param(None, {"name": "x"}, {"id": "i-1"}, id="unmatched-id-only"),
    ],
)
def test_reply_body(match: RouteMatch | None, doc: Any, body: dict[str, Any]) -> None:
    reply = reply_body(match, Resolved("i-1", Target("/o", [], doc)))
    assert reply == body
    assert next(iter(reply)) == "id"


@pytest.mark.parametrize(
    ("match", "body", "changed", "reply"),
    [
        pytest.param(START, b'{"name": "x"}', False, b'{"id":"i-1","name": "x"}', id="spliced"),
        pytest.param(START, b' \n{"n":1} ', False, b'{"id":"i-1","n":1} ', id="spliced-space"),
        pytest.param(START, b'{"id": "c", "n": 1}', False, b'{"id":"i-1","n":1}', id="own-id"),
        pytest.param(START, b"{}", False, b'{"id":"i-1"}', id="empty-object"),
        pytest.param(START, b'{"n": 1}', True, b'{"id":"i-1","n":1}', id="id-injected"),
        pytest.param(
            START, '{"n": 1}'.encode("utf-16-le"), False, b'{"id":"i-1","n":1}', id="utf-16"
        ),
        pytest.param(OPERATION, b'{"n": 1}', False, b'{"id":"i-1"}', id="operation"),
        pytest.param(
            START,
            b'{"s": "\\ud800"}',
            False,
            b'{"id":"i-1","s": "\\ud800"}',
            id="lone-surrogate-spliced",
        ),
        pytest.param(
            START,
            b'{"id": 1, "s": "\\ud800"}',
            False,
            b'{"id":"i-1","s":"\\ud800"}',
            id="lone-surrogate-serialised",
        ),
    ],
)
def test_reply_bytes(match: RouteMatch | None, body: bytes, changed: bool, reply: bytes) -> None:
    doc = json.loads(body)
    resolved = Resolved("i-1", Target("/o", [], doc), body_changed=changed)

    got = reply_bytes(match, resolved, body)

    assert got == reply
    assert json.loads(got) == reply_body(match, resolved)


# -- management: redacted_url and job_view -------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        pytest.param("http://cb.example/hook", "http://cb.example/hook", id="plain"),
        pytest.param("https://cb.example:8443/a/b", "https://cb.example:8443/a/b", id="port-path"),
        pytest.param(
            "http://cb.example/h?token=abc&x=1",
            "http://cb.example/h?token=***&x=***",
            id="query-values",
        ),
        pytest.param("http://cb.example/h?k=a&k=b", "http://cb.example/h?k=***", id="repeated"),
        pytest.param("http://user:pw@cb.example/h", "http://cb.example/h", id="user-info"),
        pytest.param("http://user@cb.example/h", "http://cb.example/h", id="user-only"),
        pytest.param(
            "http://cb.example/h#access_token=abc",
            "http://cb.example/h",
            id="fragment",
        ),
    ],
)
def test_redacted_url(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


SECRET_HEADERS = [("Authorization", "Bearer s3cr3t-token"), ("Cookie", "session=s3cr3t-cookie")]
SECRET_BODY = b'{"password": "s3cr3t-body"}'


def job(callback_url: str | None, **changes: Any) -> Job:
    request = UpstreamRequest(
        "POST", "/orders/o-1/approve?businessKey=s3cr3t-query", SECRET_HEADERS, SECRET_BODY
    )
    return Job(
        id="job-1",
        instance_id="o-1",
        method=request.method,
        path_qs=request.path_qs,
        request=request,
        callback_url=callback_url,
        route="/{workflow}/{id}/{operation:.+}",
        path_params={"workflow": "orders", "id": "o-1"},
        created_at=1_700_000_000.0,
        updated_at=1_700_000_001.5,
        **changes,
    )


FINISHED = {
    "state": JobState.DELIVERING,
    "status": AtkStatus.COMPLETED,
    "result": UpstreamResult(200, [("Set-Cookie", "s3cr3t-set")], b'{"token": "s3cr3t-result"}'),
    "upstream_status": 200,
    "due_at": 1_700_000_004.0,
    "tries": 1,
    "attempts": (
        Attempt(1_700_000_002.0, 500, None, 0.25),
        Attempt(1_700_000_003.0, None, "refused", 0.01),
    ),
}


@pytest.mark.parametrize(
    ("callback", "changes"),
    [
        pytest.param(None, {}, id="accepted-no-callback"),
        pytest.param("https://u:s3cr3t-pw@cb.example/h?sig=s3cr3t-sig", {}, id="accepted"),
        pytest.param("https://cb.example/h?sig=s3cr3t-sig", FINISHED, id="delivering"),
    ],
)
def test_job_view_shows_no_secrets(callback: str | None, changes: dict[str, Any]) -> None:
    text = json.dumps(job_view(job(callback, **changes)))
    assert "s3cr3t" not in text


def test_job_view() -> None:
    view = job_view(job("https://cb.example/h?sig=abc", **FINISHED))
    assert view == {
        "job": "job-1",
        "instance_id": "o-1",
        "state": "delivering",
        "status": "Completed",
        "method": "POST",
        "path": "/orders/o-1/approve",
        "route": "/{workflow}/{id}/{operation:.+}",
        "created_at": "2023-11-14T22:13:20.000+00:00",
        "updated_at": "2023-11-14T22:13:21.500+00:00",
        "due_at": "2023-11-14T22:13:24.000+00:00",
        "upstream": {"status": 200, "error": None},
        "upstream_tries": 1,
        "reason": None,
        "callback": {
            "url": "https://cb.example/h?sig=***",
            "attempts": [
                {
                    "attempt": 1,
                    "at": "2023-11-14T22:13:22.000+00:00",
                    "status": 500,
                    "error": None,
                    "duration": 0.25,
                },
                {
                    "attempt": 2,
                    "at": "2023-11-14T22:13:23.000+00:00",
                    "status": None,
                    "error": "refused",
                    "duration": 0.01,
                },
            ],
        },
    }


def test_job_view_before_a_result() -> None:
    view = job_view(job(None))
    assert (view["state"], view["status"], view["upstream"], view["callback"]) == (
        "accepted",
        None,
        None,
        None,
    )
