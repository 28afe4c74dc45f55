"""W3C trace context: which traceparents a job keeps, and how they come back out."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from atkproxy.tracing import job_trace, trace_fields, trace_headers, valid_traceparent

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (PARENT, True),
        (f"00-{TRACE_ID}-b7ad6b7169203331-00", True),  # not sampled is still a trace
        (f"01-{TRACE_ID}-b7ad6b7169203331-01-later-fields", True),  # a later version may add
        (f"01-{TRACE_ID}-b7ad6b7169203331-01", True),
        (f"00-{TRACE_ID}-b7ad6b7169203331-01-more", False),  # version 00 has exactly four
        (f"ff-{TRACE_ID}-b7ad6b7169203331-01", False),  # ff is forbidden
        (f"00-{'0' * 32}-b7ad6b7169203331-01", False),  # all-zero trace id
        (f"00-{TRACE_ID}-{'0' * 16}-01", False),  # all-zero parent id
        (PARENT.upper(), False),  # lower case only
        (f"00-{TRACE_ID[:-1]}-b7ad6b7169203331-01", False),  # 31 hex
        (f"00-{TRACE_ID}-b7ad6b716920333-01", False),  # 15 hex
        (f"00-{TRACE_ID}-b7ad6b7169203331-1", False),
        (f"00_{TRACE_ID}_b7ad6b7169203331_01", False),
        (f"00-{TRACE_ID[:-1]}g-b7ad6b7169203331-01", False),
        (f" {PARENT}", False),
        ("", False),
    ],
)
def test_valid_traceparent(value: str, valid: bool) -> None:
    assert valid_traceparent(value) is valid


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


@pytest.mark.parametrize(
    ("pairs", "trace"),
    [
        ((), None),
        ((("traceparent", PARENT),), PARENT),
        ((("Traceparent", PARENT), ("tracestate", "congo=t61, rojo=00f0")),
         f"{PARENT} congo=t61, rojo=00f0"),
        ((("traceparent", PARENT), ("tracestate", "a=1"), ("tracestate", "b=2")),
         f"{PARENT} a=1,b=2"),  # several headers are one list
        ((("traceparent", PARENT), ("tracestate", "x=" + "y" * 600)), PARENT),  # too long
        ((("traceparent", PARENT), ("tracestate", "a=\u00e9")), PARENT),  # not ASCII
        ((("traceparent", PARENT), ("tracestate", "")), PARENT),
        ((("traceparent", "00-bad"), ("tracestate", "a=1")), None),  # state ignored too
        ((("traceparent", PARENT), ("traceparent", PARENT)), None),  # two are invalid
        ((("tracestate", "a=1"),), None),
    ],
)  # fmt: skip
def test_what_a_job_keeps(pairs: tuple[tuple[str, str], ...], trace: str | None) -> None:
    assert job_trace(headers(*pairs)) == trace


@pytest.mark.parametrize(
    ("trace", "out", "fields"),
    [
        (None, [], {}),
        (PARENT, [("traceparent", PARENT)], {"trace_id": TRACE_ID}),
        (f"{PARENT} a=1, b=2", [("traceparent", PARENT), ("tracestate", "a=1, b=2")],
         {"trace_id": TRACE_ID}),
    ],
)  # fmt: skip
def test_a_kept_trace_comes_back_as_headers_and_a_log_field(
    trace: str | None, out: list[tuple[str, str]], fields: dict[str, str]
) -> None:
    assert trace_headers(trace) == out
    assert trace_fields(trace) == fields
