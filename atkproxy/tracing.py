"""W3C Trace Context (pure): the `traceparent` and `tracestate` of an async request, kept on
its job so that the callback carries them and the job's log lines name its trace.

A job keeps them in `Job.trace` as one string: the traceparent, then (when the request had
one) a space and the tracestate; a valid traceparent has no space, so the first one splits.
Only a valid traceparent is kept (`00-<32 hex>-<16 hex>-<2 hex>`, lower case, ids not all
zeros; a later version may append `-...`); with an invalid one, the tracestate is ignored too,
as the specification says. The proxy does not take part in the trace (it adds no span): the
upstream gets the request's headers as the client sent them, valid or not, and the callback
gets the recorded pair, so the receiver's work is a child of the client's span.
"""

from __future__ import annotations

import re

from multidict import CIMultiDictProxy

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
MAX_TRACESTATE = 512  # what the specification asks every vendor to pass on at least
_PARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_STATE = re.compile(r"[\x20-\x7e]*")  # printable ASCII: what a list of key=value pairs uses


def valid_traceparent(value: str) -> bool:
    match = _PARENT.fullmatch(value)
    if match is None:
        return False
    version, trace_id, parent_id, _, rest = match.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return False
    return version != "00" or rest is None


def job_trace(headers: CIMultiDictProxy[str]) -> str | None:
    """What a job keeps of the request's trace context; None without a valid traceparent."""
    parents = headers.getall(TRACEPARENT, [])
    if len(parents) != 1 or not valid_traceparent(parents[0]):
        return None
    state = ",".join(headers.getall(TRACESTATE, [])).strip()
    if state and len(state) <= MAX_TRACESTATE and _STATE.fullmatch(state):
        return f"{parents[0]} {state}"
    return parents[0]


def trace_headers(trace: str | None) -> list[tuple[str, str]]:
    """The headers that pass a job's trace context on (none without one)."""
    if trace is None:
        return []
    parent, _, state = trace.partition(" ")
    return [(TRACEPARENT, parent), *([(TRACESTATE, state)] if state else [])]


def trace_fields(trace: str | None) -> dict[str, str]:
    """Log fields of a job's trace: its trace id, to find the job's lines from the trace."""
    return {} if trace is None else {"trace_id": trace.split("-", 2)[1]}
