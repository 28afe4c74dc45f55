"""One suite for every job store backend, so they all behave like the memory store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from atkproxy.jobs import (
    AtkStatus,
    Attempt,
    Job,
    JobState,
    UpstreamRequest,
    UpstreamResult,
    to_record,
)
from atkproxy.store import JobStore, open_store
from atkproxy.store.sqlite import db_path


def _sqlite_url(request: pytest.FixtureRequest) -> str:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return f"sqlite:///{tmp_path / 'state' / 'jobs.db'}"


# backend name -> the store URL to open for one test (a backend that needs a server asks
# for that server's fixture through `request`).
STORE_URLS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "memory": lambda request: "memory://",
    "sqlite": _sqlite_url,
}


@pytest.fixture(params=list(STORE_URLS))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    opened = await open_store(STORE_URLS[request.param](request))
    yield opened
    await opened.close()


def make_job(
    job_id: str,
    state: JobState = JobState.ACCEPTED,
    created_at: float = 1000.0,
    updated_at: float | None = None,
) -> Job:
    return Job(
        id=job_id,
        instance_id=f"instance-{job_id}",
        request=UpstreamRequest("POST", "/orders", [("Content-Type", "application/json")], b"{}"),
        state=state,
        created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
    )


FULL_JOB = Job(
    id="full",
    instance_id="6f1c2c1e-0000-4000-8000-000000000001",
    request=UpstreamRequest(
        method="PUT",
        path_qs="/orders/7?expand=lines&expand=notes",
        headers=[
            ("Accept", "application/json"),
            ("X-Tag", "a"),
            ("X-Tag", "b"),
            # aiohttp decodes header bytes that are not UTF-8 with surrogateescape
            ("X-Raw", "caf\udce9"),
        ],
        body=b"\x00\xff\xfe\x80 not utf-8",
    ),
    callback_url="http://callbacks.test/hook?job=full",
    route="orders-update",
    replay_safe=True,
    path_params={"id": "7", "kind": "ünïcode"},
    state=JobState.DELIVERING,
    created_at=1000.125,
    updated_at=1010.5,
    result=UpstreamResult(
        status=0,
        headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
        body=b"\xc3\x28",
        error="upstream refused the connection",
    ),
    status=AtkStatus.FAILED,
    reason="upstream unreachable",
    attempts=(
        Attempt(at=1011.0, status=503, error=None, duration=0.25),
        Attempt(at=1012.0, status=None, error="callback timed out", duration=5.0),
    ),
)


@pytest.mark.parametrize("job", [make_job("minimal"), FULL_JOB], ids=["minimal", "full"])
async def test_add_then_get_returns_the_same_job(store: JobStore, job: Job) -> None:
    await store.add(job)

    assert await store.get(job.id) == job


async def test_get_of_unknown_id_is_none(store: JobStore) -> None:
    assert await store.get("nope") is None


async def test_add_of_existing_id_raises_and_keeps_the_first(store: JobStore) -> None:
    first = make_job("a")
    await store.add(first)

    with pytest.raises(KeyError):
        await store.add(make_job("a", state=JobState.RUNNING))
    assert await store.get("a") == first


async def test_save_of_unknown_id_raises(store: JobStore) -> None:
    with pytest.raises(KeyError):
        await store.save(make_job("ghost"))

    assert await store.get("ghost") is None


async def test_save_replaces_the_stored_job(store: JobStore) -> None:
    await store.add(make_job("a"))
    running = make_job("a").to(JobState.RUNNING)
    finished = running.to(JobState.FINISHED, result=FULL_JOB.result, status=AtkStatus.COMPLETED)

    await store.save(running)
    await store.save(finished)

    assert await store.get("a") == finished


IN_STATES_CASES = [
    ([JobState.ACCEPTED], ["early", "middle", "late"]),
    ([JobState.RUNNING, JobState.DEAD], ["first", "last"]),
    ([JobState.DELIVERED], []),
    ([], []),
]


@pytest.mark.parametrize(("states", "expected_ids"), IN_STATES_CASES)
async def test_in_states_filters_and_orders_oldest_first(
    store: JobStore, states: list[JobState], expected_ids: list[str]
) -> None:
    # added out of creation order, so only sorting yields oldest first
    for job in [
        make_job("late", JobState.ACCEPTED, created_at=3000.0),
        make_job("last", JobState.DEAD, created_at=4000.0),
        make_job("early", JobState.ACCEPTED, created_at=1000.0),
        make_job("first", JobState.RUNNING, created_at=500.0),
        make_job("middle", JobState.ACCEPTED, created_at=2000.0),
    ]:
        await store.add(job)

    found = await store.in_states(states)

    assert [job.id for job in found] == expected_ids


CUTOFF = 2000.0

# (job, purged by purge(CUTOFF)?)
PURGE_CASES = [
    (make_job("delivered-old", JobState.DELIVERED, updated_at=1999.0), True),
    (make_job("dead-old", JobState.DEAD, updated_at=1500.0), True),
    (make_job("finished-old", JobState.FINISHED, updated_at=1000.0), True),
    (make_job("delivered-at-cutoff", JobState.DELIVERED, updated_at=CUTOFF), False),
    (make_job("dead-new", JobState.DEAD, updated_at=2500.0), False),
    (make_job("accepted-old", JobState.ACCEPTED, updated_at=1000.0), False),
    (make_job("running-old", JobState.RUNNING, updated_at=1000.0), False),
    (make_job("delivering-old", JobState.DELIVERING, updated_at=1000.0), False),
]


async def test_purge_removes_only_terminal_jobs_older_than_the_cutoff(store: JobStore) -> None:
    for job, _ in PURGE_CASES:
        await store.add(job)

    removed = await store.purge(CUTOFF)

    assert removed == sum(purged for _, purged in PURGE_CASES)
    left = {job.id: await store.get(job.id) for job, _ in PURGE_CASES}
    assert left == {job.id: None if purged else job for job, purged in PURGE_CASES}
    assert await store.purge(CUTOFF) == 0


# -- SQLite only ---------------------------------------------------------------------------


async def _read_raw(path: Path, sql: str) -> list[object]:
    """Ask the file through a connection of its own, as another process would."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute(sql).fetchall()]


async def test_sqlite_add_is_committed_before_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        await store.add(FULL_JOB)

        assert await _read_raw(path, "SELECT id FROM jobs") == [FULL_JOB.id]
    finally:
        await store.close()


async def test_sqlite_job_survives_a_restart_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    store = await open_store(url)
    await store.add(FULL_JOB)
    await store.close()

    reopened = await open_store(url)
    try:
        assert await reopened.get(FULL_JOB.id) == FULL_JOB
    finally:
        await reopened.close()
    assert await _read_raw(path, "PRAGMA journal_mode") == ["wal"]
    [record] = await _read_raw(path, "SELECT record FROM jobs")
    assert isinstance(record, str)
    assert json.loads(record) == to_record(FULL_JOB)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///jobs.db", Path("jobs.db")),
        ("sqlite:///var/atk/jobs.db", Path("var/atk/jobs.db")),
        ("sqlite:////var/atk/jobs.db", Path("/var/atk/jobs.db")),
    ],
)
def test_sqlite_url_names_a_relative_or_absolute_file(url: str, expected: Path) -> None:
    assert db_path(url) == expected


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://host/jobs.db", "jobs.db"])
def test_sqlite_url_without_a_file_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        db_path(url)


async def test_sqlite_concurrent_writes_commit_together_and_a_duplicate_fails_alone(
    tmp_path: Path,
) -> None:
    store = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        jobs = [replace(FULL_JOB, id=f"job-{n}") for n in range(50)]
        outcomes = await asyncio.gather(
            *(store.add(job) for job in jobs), store.add(jobs[7]), return_exceptions=True
        )
        assert outcomes[:50] == [None] * 50
        assert isinstance(outcomes[50], KeyError)
        stored = await _read_raw(tmp_path / "jobs.db", "SELECT count(*) FROM jobs")
        assert stored == [50]
    finally:
        await store.close()
