"""The job life cycle and the record form every store keeps (jobs.py)."""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import FrozenInstanceError, fields, replace

import pytest

from atkproxy.jobs import (
    AtkStatus,
    Attempt,
    Job,
    JobState,
    TransitionError,
    UpstreamRequest,
    UpstreamResult,
    new_instance_id,
    new_job_id,
)

S = JobState

# The life cycle as DESIGN.md draws it, written out here rather than read from jobs.ALLOWED.
ALLOWED_MOVES = {
    (S.ACCEPTED, S.RUNNING),  # a worker calls the upstream
    (S.ACCEPTED, S.FINISHED),  # settled without a call (recovery of a job that may not re-run)
    (S.RUNNING, S.FINISHED),  # the upstream answered (or could not)
    (S.RUNNING, S.ACCEPTED),  # the upstream was not reached: tried again later
    (S.RUNNING, S.RUNNING),  # a replay-safe job re-run after its holder died
    (S.FINISHED, S.DELIVERING),  # a callback is owed
    (S.DELIVERING, S.DELIVERING),  # another attempt
    (S.DELIVERING, S.DELIVERED),
    (S.DELIVERING, S.DEAD),
    (S.DEAD, S.DELIVERING),  # re-driven
    (S.DELIVERED, S.DELIVERING),  # re-driven
}
ALL_MOVES = list(itertools.product(JobState, JobState))
FORBIDDEN_MOVES = [move for move in ALL_MOVES if move not in ALLOWED_MOVES]


def move_id(move: tuple[JobState, JobState]) -> str:
    return f"{move[0]}->{move[1]}"


def job(state: JobState = S.ACCEPTED) -> Job:
    request = UpstreamRequest("POST", "/orders?businessKey=k", [("A", "1")], b"{}")
    return Job(id="job-1", instance_id="k", method="POST", path_qs="/orders?businessKey=k",
               request=request, state=state, updated_at=0.0)  # fmt: skip


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


def test_transition_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        job(S.DELIVERED).to(S.RUNNING)


def test_result_facts_follow_the_result() -> None:
    result = UpstreamResult(503, [("Content-Type", "text/plain")], b"busy", "upstream busy")
    with_result = job(S.RUNNING).with_result(result)
    assert (with_result.upstream_status, with_result.upstream_error) == (503, "upstream busy")
    assert with_result.has_result and not job().has_result
    assert result.content_type == "text/plain"


def test_lease_and_release() -> None:
    held = job().leased("me", 50.0)
    assert (held.lease_owner, held.lease_until) == ("me", 50.0)
    released = held.released(70.0)
    assert (released.lease_owner, released.lease_until, released.due_at) == (None, 0.0, 70.0)
    assert released.light().request is None and held.request is not None


def test_delivery_attempts_start_at_the_delivery_base() -> None:
    attempts = tuple(Attempt(float(n), 500, None, 0.1) for n in range(3))
    redriven = replace(job(S.DELIVERING), attempts=attempts, delivery_base=2)
    assert redriven.delivery_attempts == attempts[2:]
    assert Attempt(1.0, None, None, 0.0).pending and not attempts[0].pending


def test_job_ids_are_32_hex_digits_that_grow_with_time_and_do_not_repeat() -> None:
    ids = [new_job_id() for _ in range(2000)]

    assert all(len(i) == 32 and int(i, 16) >= 0 and i == i.lower() for i in ids)
    assert len(set(ids)) == len(ids)
    assert [i[:12] for i in ids] == sorted(i[:12] for i in ids)  # the time, in ms
    assert ids[0][:12] <= f"{time.time_ns() // 1_000_000:012x}"


CHANGES = {  # a value of each field's type that differs from job()'s
    "id": "job-2", "instance_id": "k2", "method": "PUT", "path_qs": "/other",
    "request": None, "callback_url": "http://h/cb", "route": "/orders", "replay_safe": True,
    "path_params": {"a": "b"}, "state": S.DEAD, "created_at": 5.0, "updated_at": 6.0,
    "result": UpstreamResult(200, [], b"ok"), "upstream_status": 200, "upstream_error": "e",
    "status": AtkStatus.COMPLETED, "reason": "r", "attempts": (Attempt(1.0, 200, None, 0.1),),
    "delivery_base": 1, "tries": 2, "due_at": 7.0, "lease_owner": "w", "lease_until": 8.0,
    "idempotency": "i", "fingerprint": "f", "reply": b"{}", "owner": "o", "trace": "t",
}  # fmt: skip


def test_the_changes_table_names_every_field() -> None:
    assert set(CHANGES) == {f.name for f in fields(Job)}


@pytest.mark.parametrize("name", sorted(CHANGES))
def test_changed_is_replace_and_leaves_the_original_alone(name: str) -> None:
    original = job()
    before = replace(original)

    copy = original.changed(**{name: CHANGES[name]})

    assert copy == replace(original, **{name: CHANGES[name]})
    assert getattr(copy, name) == CHANGES[name] != getattr(original, name)
    assert original == before  # a store given the original never sees the change


def test_changed_refuses_an_unknown_field_and_stays_frozen() -> None:
    with pytest.raises(TypeError, match="no field"):
        job().changed(colour="red")
    with pytest.raises(FrozenInstanceError):
        job().changed(tries=1).tries = 2  # type: ignore[misc]


def test_instance_ids_are_random_uuid4_text() -> None:
    ids = [new_instance_id() for _ in range(2000)]

    parsed = [uuid.UUID(i) for i in ids]
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))  # the usual text form
    assert {(u.version, u.variant) for u in parsed} == {(4, uuid.RFC_4122)}
    assert len(set(ids)) == len(ids)
    # every hex digit but the version's is random: each shows up in the first position
    assert {i[0] for i in ids} == set("0123456789abcdef")
