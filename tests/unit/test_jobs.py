"""The job life cycle and the record form every store keeps (jobs.py)."""

from __future__ import annotations

import itertools
import json

import pytest

from atkproxy.jobs import (
    AtkStatus,
    Attempt,
    Job,
    JobState,
    TransitionError,
    UpstreamRequest,
    UpstreamResult,
    dumps,
    from_record,
    loads,
    to_record,
)

S = JobState

# The life cycle as DESIGN.md draws it, written out here rather than read from jobs.ALLOWED.
ALLOWED_MOVES = {
    (S.ACCEPTED, S.RUNNING),  # the runner picks it up
    (S.ACCEPTED, S.FINISHED),  # settled without a call (recovery of a job that may not re-run)
    (S.RUNNING, S.FINISHED),  # the upstream answered (or could not)
    (S.RUNNING, S.ACCEPTED),  # recovery re-queues a replay-safe job
    (S.FINISHED, S.DELIVERING),  # a callback is owed
    (S.DELIVERING, S.DELIVERING),  # another attempt
    (S.DELIVERING, S.DELIVERED),
    (S.DELIVERING, S.DEAD),
    (S.DEAD, S.DELIVERING),  # re-driven
}
ALL_MOVES = list(itertools.product(JobState, JobState))
FORBIDDEN_MOVES = [move for move in ALL_MOVES if move not in ALLOWED_MOVES]


def move_id(move: tuple[JobState, JobState]) -> str:
    return f"{move[0]}->{move[1]}"


def job(state: JobState = S.ACCEPTED) -> Job:
    request = UpstreamRequest("POST", "/orders?businessKey=k", [("A", "1")], b"{}")
    return Job(id="job-1", instance_id="k", request=request, state=state, updated_at=0.0)


@pytest.mark.parametrize("move", sorted(ALLOWED_MOVES), ids=move_id)
def test_allowed_transition(move: tuple[JobState, JobState]) -> None:
    before = job(move[0])
    after = before.to(move[1], reason="why")
    assert (after.state, after.reason) == (move[1], "why")
    assert after.updated_at > before.updated_at
    assert (after.id, after.created_at, after.request) == (
        before.id,
        before.created_at,
        before.request,
    )
    assert before.state == move[0]  # jobs are values: the old one is unchanged


@pytest.mark.parametrize("move", FORBIDDEN_MOVES, ids=move_id)
def test_forbidden_transition(move: tuple[JobState, JobState]) -> None:
    with pytest.raises(TransitionError) as caught:
        job(move[0]).to(move[1])
    assert str(caught.value) == f"job job-1: {move[0]} -> {move[1]} is not allowed"


def test_every_pair_is_covered() -> None:
    assert len(ALL_MOVES) == 36
    assert len(FORBIDDEN_MOVES) == 36 - len(ALLOWED_MOVES) == 27


def test_transition_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        job(S.DELIVERED).to(S.RUNNING)


# -- records --------------------------------------------------------------------------------

MINIMAL = Job(
    id="j-min",
    instance_id="i-min",
    request=UpstreamRequest("DELETE", "/orders/i-min", [], b""),
    created_at=1.0,
    updated_at=2.0,
)
FULL = Job(
    id="j-full",
    instance_id="i-full",
    request=UpstreamRequest(
        "POST",
        "/orders/i%20full/approve?x=a%26b",
        [
            ("Content-Type", "application/json"),
            ("X-Raw", "caf\udcc3\udca9"),
            ("A", "1"),
            ("a", "2"),
        ],
        b"\x00\xff binary \xfe",
    ),
    callback_url="https://cb.example/h?sig=1",
    route="/{workflow}/{id}/{operation:.+}",
    replay_safe=True,
    path_params={"workflow": "orders", "id": "i full", "operation": "approve"},
    state=S.DEAD,
    created_at=1_700_000_000.123456,
    updated_at=1_700_000_100.654321,
    result=UpstreamResult(409, [("Content-Type", "text/plain")], b"\xffconflict", error=None),
    status=AtkStatus.ABORTED,
    reason="callback receiver kept failing",
    attempts=(Attempt(1.5, 500, None, 0.2), Attempt(2.5, None, "refused", 0.01)),
)
NO_ANSWER = Job(
    id="j-err",
    instance_id="i-err",
    request=UpstreamRequest("PUT", "/orders/i-err", [("A", "1")], b"{}"),
    state=S.FINISHED,
    result=UpstreamResult(504, [], b"", error="upstream did not answer in time"),
    status=AtkStatus.FAILED,
)
CASES = [
    pytest.param(MINIMAL, id="minimal"),
    pytest.param(FULL, id="full"),
    pytest.param(NO_ANSWER, id="no-answer"),
]


@pytest.mark.parametrize("original", CASES)
def test_record_round_trip(original: Job) -> None:
    assert from_record(to_record(original)) == original


@pytest.mark.parametrize("original", CASES)
def test_record_is_json_safe(original: Job) -> None:
    record = to_record(original)
    assert json.loads(json.dumps(record)) == record


@pytest.mark.parametrize("original", CASES)
def test_dumps_loads_round_trip(original: Job) -> None:
    text = dumps(original)
    assert loads(text) == original
    assert loads(text.encode()) == original


def test_dumps_is_ascii_so_lone_surrogates_store() -> None:
    text = dumps(FULL)
    assert text.isascii()
    text.encode("utf-8")  # would raise on a lone surrogate left as is


def test_record_shape() -> None:
    record = to_record(FULL)
    assert record["state"] == "dead"
    assert record["status"] == "Aborted"
    assert record["request"]["headers"][0] == ["Content-Type", "application/json"]
    assert record["request"]["body"] == "AP8gYmluYXJ5IP4="
    assert record["result"]["error"] is None
    assert record["attempts"] == [[1.5, 500, None, 0.2], [2.5, None, "refused", 0.01]]
    assert to_record(MINIMAL)["result"] is None
    assert to_record(MINIMAL)["status"] is None
