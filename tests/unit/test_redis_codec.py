"""The Redis store's encoding of a job (pure): every field comes back as it went in."""

from __future__ import annotations

from dataclasses import replace

import pytest

from atkproxy.jobs import AtkStatus, Attempt, Job, JobState, UpstreamResult
from atkproxy.store.redis_codec import (
    SMALL_FIELDS,
    all_fields,
    decode_job,
    decode_result,
    encode_result,
    small_fields,
    unpack,
)
from tests.unit.test_store import FULL_JOB, RESULT, finished, make_job

JOBS = [
    pytest.param(make_job("minimal"), id="minimal"),
    pytest.param(FULL_JOB, id="full"),
    pytest.param(replace(finished(FULL_JOB), status=AtkStatus.FAILED), id="finished"),
    pytest.param(
        replace(
            make_job("odd", created_at=0.1 + 0.2, due_at=None),
            lease_owner="w:1",
            lease_until=1e-300,
            attempts=(Attempt(1.5, None, "ünïcode \n error", 0.1, 2.5),),
            result=UpstreamResult(0, [], b"", error="refused", not_sent=True),
            upstream_status=0,
        ),
        id="odd-floats-and-texts",
    ),
]


@pytest.mark.parametrize("job", JOBS)
def test_a_job_comes_back_whole(job: Job) -> None:
    assert decode_job(all_fields(job)) == job


@pytest.mark.parametrize("job", JOBS)
def test_small_fields_leave_the_bodies_and_name_what_is_none(job: Job) -> None:
    written, absent = small_fields(job)

    assert decode_job(written) == job.light()
    assert sorted([*written, *absent]) == sorted(SMALL_FIELDS)
    assert all(getattr(job, name) is None for name in absent)


@pytest.mark.parametrize(
    "result",
    [RESULT, UpstreamResult(204, [], b""), UpstreamResult(200, [("X", "a\nb")], b"\n\n:")],
    ids=["binary", "empty", "newlines"],
)
def test_a_result_comes_back_whole(result: UpstreamResult) -> None:
    assert decode_result(encode_result(result)) == result


def _packed(*items: bytes) -> bytes:
    return b"".join(str(len(item)).encode() + b":" + item for item in items)


@pytest.mark.parametrize(
    ("packed", "expected"),
    [
        (b"", {}),
        (_packed(b"state", b"accepted"), {"state": b"accepted"}),
        (
            _packed(b"reply", b"", b"request", b"12:3:\n\x00"),
            {"reply": b"", "request": b"12:3:\n\x00"},
        ),
    ],
    ids=["empty", "one", "empty-value-and-colons"],
)
def test_unpack(packed: bytes, expected: dict[str, bytes]) -> None:
    assert unpack(packed) == expected


def test_unpack_refuses_a_field_without_value() -> None:
    with pytest.raises(ValueError, match="no value"):
        unpack(_packed(b"state"))


def test_the_state_is_written_as_its_name() -> None:
    written, _ = small_fields(make_job("a", JobState.DEAD))
    assert written["state"] == b"dead"  # the Lua scripts compare it as text
