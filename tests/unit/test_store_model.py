"""The SQLite store does what the memory store (the reference) does, on random sequences of
operations: the same answers, the same refusals, the same jobs left at the end."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atkproxy.jobs import Attempt, Job, JobState
from atkproxy.store import JobMissing, JobStore, LeaseLost
from atkproxy.store.memory import MemoryStore
from atkproxy.store.sqlite import SQLiteStore

from .test_store import make_job

IDS = st.sampled_from(["a", "b", "c"])
# few states, so that jobs added and jobs claimed meet often; the rest behave alike
STATES = st.sampled_from(
    [JobState.ACCEPTED, JobState.DELIVERING, JobState.DEAD, JobState.DELIVERED]
)
TIMES = st.integers(0, 20).map(float)  # all far in the past: every lease is over by now
OWNERS = st.sampled_from(["w1", "w2"])

ADD = st.tuples(
    st.just("add"),
    IDS,
    STATES,
    TIMES,
    st.none() | TIMES,
    st.none() | st.sampled_from("xy"),
    st.integers(0, 2),  # delivery attempts so far
)
CLAIM = st.tuples(
    st.just("claim"),
    OWNERS,
    st.sets(STATES, min_size=1),
    TIMES,
    st.integers(0, 10).map(float),  # how long the lease runs
    st.integers(1, 3),
)
UPDATE = st.tuples(st.just("update"), IDS, STATES, st.none() | TIMES, st.none() | OWNERS)
RENEW = st.tuples(st.just("renew"), OWNERS, st.sets(IDS), TIMES)
REDELIVER_ONE = st.tuples(st.just("redeliver_one"), IDS, TIMES)
REDELIVER_MANY = st.tuples(st.just("redeliver_many"), STATES, TIMES, st.integers(1, 3))
PURGE = st.tuples(st.just("purge"), TIMES)
PAGE = st.tuples(st.just("page"), st.none() | STATES, st.integers(1, 3))
OPS = st.lists(
    st.one_of(ADD, CLAIM, UPDATE, RENEW, REDELIVER_ONE, REDELIVER_MANY, PURGE, PAGE),
    min_size=8,
    max_size=30,
)


def comparable(value: Any) -> Any:
    """Answers with what may differ dropped: the clock a redelivery reads."""
    if isinstance(value, Job):
        return replace(value, updated_at=0.0)
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    if isinstance(value, Exception):
        return type(value).__name__
    return value


async def apply(store: JobStore, op: tuple[Any, ...]) -> Any:
    kind, *args = op
    try:
        return comparable(await _apply(store, kind, args))
    except (KeyError, JobMissing, LeaseLost) as exc:
        return comparable(exc)


async def _apply(store: JobStore, kind: str, args: list[Any]) -> Any:
    if kind == "add":
        job_id, state, created, due, key, tries = args
        attempts = tuple(Attempt(created + n, 500, None, 0.1) for n in range(tries))
        job = make_job(
            job_id, state, created_at=created, due_at=due, idempotency=key, attempts=attempts
        )
        recorded = await store.add(job)  # on a repeat, what the caller compares
        return (recorded.id, recorded.fingerprint, recorded.reply)
    if kind == "claim":
        owner, states, now, lease_for, limit = args
        return await store.claim(owner, sorted(states), now, now + lease_for, limit)
    if kind == "update":
        job_id, state, due, owner = args
        stored = await store.get(job_id)
        base = stored or make_job(job_id)
        return await store.update(replace(base, state=state, due_at=due, reason=kind), owner)
    if kind == "renew":
        owner, ids, until = args
        return sorted(await store.renew(owner, ids, until))
    if kind == "redeliver_one":
        return await store.redeliver(args[1], job_id=args[0])
    if kind == "redeliver_many":
        return await store.redeliver(args[1], state=args[0], limit=args[2])
    if kind == "purge":
        return await store.purge(args[0], 100)  # all that qualify: which ones is not fixed
    state, limit = args
    jobs, cursor = await store.page(state, limit, None)
    return [jobs, cursor]


async def run_both(ops: list[tuple[Any, ...]], path: Path) -> None:
    memory = MemoryStore()
    sqlite = await SQLiteStore.open(f"sqlite:///{path}")
    try:
        for step, op in enumerate(ops):
            expected, got = await apply(memory, op), await apply(sqlite, op)
            assert got == expected, f"step {step}: {op}"
        assert comparable(await sqlite.page(None, 100, None)) == comparable(
            await memory.page(None, 100, None)
        )
        assert await sqlite.counts() == await memory.counts()
    finally:
        await sqlite.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_sqlite_answers_like_the_memory_store(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as where:
        asyncio.run(run_both(ops, Path(where) / "jobs.db"))
