"""One suite for every job store backend, so they all behave like the memory store.

A backend joins by adding an entry to STORE_URLS (a backend that needs a server asks for
that server's fixture through `request`).
"""

from __future__ import annotations

import asyncio
import time
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
)
from atkproxy.store import JobMissing, JobStore, LeaseLost, open_store


def _sqlite_url(request: pytest.FixtureRequest) -> str:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return f"sqlite:///{tmp_path / 'state' / 'jobs.db'}"


STORE_URLS: dict[str, Callable[[pytest.FixtureRequest], str]] = {
    "memory": lambda request: "memory://",
    "sqlite": _sqlite_url,
    "redis": lambda request: str(request.getfixturevalue("redis_url")),
}


@pytest.fixture(params=list(STORE_URLS))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[JobStore]:
    opened = await open_store(STORE_URLS[request.param](request))
    yield opened
    await opened.close()


NOW = 10_000.0
REQUEST = UpstreamRequest("POST", "/orders", [("Content-Type", "application/json")], b"{}")


def make_job(
    job_id: str,
    state: JobState = JobState.ACCEPTED,
    created_at: float = 1000.0,
    updated_at: float | None = None,
    due_at: float | None = 1000.0,
    **changes: object,
) -> Job:
    job = Job(
        id=job_id,
        instance_id=f"instance-{job_id}",
        method="POST",
        path_qs="/orders",
        request=REQUEST,
        state=state,
        created_at=created_at,
        updated_at=created_at if updated_at is None else updated_at,
        due_at=due_at,
    )
    return replace(job, **changes)  # type: ignore[arg-type]


RESULT = UpstreamResult(
    status=200,
    headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Type", "text/x")],
    body=b"\xc3\x28 not utf-8 \x00" * 10,
)

FULL_JOB = Job(
    id="full",
    instance_id="6f1c2c1e-0000-4000-8000-000000000001",
    method="PUT",
    path_qs="/orders/7?expand=lines&expand=notes",
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
    state=JobState.ACCEPTED,
    created_at=1000.125,
    updated_at=1010.5,
    due_at=1000.125,
    idempotency="idem-digest",
    fingerprint="fp-digest",
    reply=b'{"id": "6f1c2c1e"}',
    owner="owner-digest",
    trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)


def finished(job: Job) -> Job:
    """`job` after its upstream call: delivering, with a result, attempts and a reason."""
    running = job.to(JobState.RUNNING)
    done = running.to(JobState.FINISHED, status=AtkStatus.ACTIVE).with_result(RESULT)
    return replace(
        done.to(JobState.DELIVERING, reason="receiver said 503"),
        attempts=(
            Attempt(at=1011.0, status=503, error=None, duration=0.25, retry_after=5.0),
            Attempt(at=1012.0, status=None, error="callback timed out", duration=5.0),
            Attempt(at=1013.0, status=None, error=None, duration=0.0),
        ),
        delivery_base=1,
        tries=2,
        due_at=2000.5,
    )


# -- add and get ----------------------------------------------------------------------------


@pytest.mark.parametrize("job", [make_job("minimal"), FULL_JOB], ids=["minimal", "full"])
async def test_add_returns_the_job_and_get_returns_it_without_bodies(
    store: JobStore, job: Job
) -> None:
    assert await store.add(job) == job

    assert await store.get(job.id) == job.light()


async def test_get_and_result_of_unknown_id_are_none(store: JobStore) -> None:
    assert await store.get("nope") is None
    assert await store.result("nope") is None


async def test_add_of_existing_id_raises_and_keeps_the_first(store: JobStore) -> None:
    first = make_job("a")
    await store.add(first)

    with pytest.raises(KeyError):
        await store.add(make_job("a", state=JobState.RUNNING))
    assert await store.get("a") == first.light()


async def test_add_with_a_known_idempotency_returns_the_recorded_job(store: JobStore) -> None:
    await store.add(FULL_JOB)
    again = replace(FULL_JOB, id="other", fingerprint="another", reply=b"{}")

    recorded = await store.add(again)

    assert (recorded.id, recorded.fingerprint, recorded.reply) == (
        FULL_JOB.id,
        FULL_JOB.fingerprint,
        FULL_JOB.reply,
    )
    assert await store.get("other") is None


async def test_concurrent_adds_all_commit_and_a_duplicate_fails_alone(store: JobStore) -> None:
    jobs = [make_job(f"job-{n}") for n in range(50)]

    outcomes = await asyncio.gather(
        *(store.add(job) for job in jobs), store.add(jobs[7]), return_exceptions=True
    )

    assert outcomes[:50] == jobs
    assert isinstance(outcomes[50], KeyError)
    assert (await store.counts())[JobState.ACCEPTED] == 50


async def test_concurrent_adds_of_one_idempotency_record_one_job(store: JobStore) -> None:
    jobs = [replace(FULL_JOB, id=f"try-{n}") for n in range(5)]

    recorded = await asyncio.gather(*(store.add(job) for job in jobs))

    assert {job.id for job in recorded} == {"try-0"}
    assert [await store.get(job.id) is not None for job in jobs] == [True] + [False] * 4


# -- update -------------------------------------------------------------------------------


async def test_update_writes_small_fields_and_the_result_once(store: JobStore) -> None:
    await store.add(FULL_JOB)
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10)
    done = finished(claimed)

    await store.update(done, "me")
    later = replace(done, result=replace(RESULT, body=b"another"), reason="later")
    await store.update(later, "me")

    assert await store.get(FULL_JOB.id) == later.light()
    assert await store.result(FULL_JOB.id) == RESULT


async def test_update_of_unknown_job_raises_job_missing(store: JobStore) -> None:
    with pytest.raises(JobMissing):
        await store.update(make_job("ghost"), None)
    assert await store.get("ghost") is None


async def test_update_by_a_writer_without_the_lease_is_refused(store: JobStore) -> None:
    await store.add(make_job("a"))
    # update(owner=None) compares the lease with the clock: a lease that runs an hour
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, time.time() + 3600, 10)

    with pytest.raises(LeaseLost):
        await store.update(claimed.to(JobState.RUNNING), "someone-else")
    with pytest.raises(LeaseLost):
        await store.update(claimed.to(JobState.RUNNING), None)
    assert (await store.get("a")).state is JobState.ACCEPTED  # type: ignore[union-attr]


async def test_update_without_owner_of_an_unleased_job_is_allowed(store: JobStore) -> None:
    await store.add(make_job("a"))

    await store.update(make_job("a", reason="edited"), None)

    assert (await store.get("a")).reason == "edited"  # type: ignore[union-attr]


async def test_update_without_owner_of_a_job_whose_lease_expired_is_allowed(
    store: JobStore,
) -> None:
    await store.add(make_job("a"))
    await store.claim("gone", [JobState.ACCEPTED], NOW, NOW + 30, 1)  # long over by now

    await store.update(make_job("a", reason="edited"), None)

    assert (await store.get("a")).reason == "edited"  # type: ignore[union-attr]


async def test_a_result_that_is_an_error_comes_back_as_it_was(store: JobStore) -> None:
    refused = UpstreamResult(0, [], b"", error="connection refused", not_sent=True)
    await store.add(make_job("a"))
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)

    await store.update(claimed.with_result(refused).released(1000.0), "me")

    assert await store.result("a") == refused
    [again] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    assert again.result == refused
    assert (again.upstream_status, again.upstream_error) == (0, "connection refused")


async def test_a_released_job_is_claimable_again_when_due(store: JobStore) -> None:
    await store.add(make_job("a"))
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10)

    await store.update(claimed.released(NOW + 5), "me")

    assert await store.claim("me", [JobState.ACCEPTED], NOW + 4, NOW + 30, 10) == []
    [again] = await store.claim("other", [JobState.ACCEPTED], NOW + 5, NOW + 35, 10)
    assert (again.id, again.lease_owner, again.lease_until) == ("a", "other", NOW + 35)


# -- claim and renew ---------------------------------------------------------------------


async def test_claim_takes_due_unleased_jobs_in_the_states_asked_earliest_due_first(
    store: JobStore,
) -> None:
    for job in [
        make_job("later", due_at=3000.0),
        make_job("sooner", due_at=1000.0),
        make_job("not-due", due_at=NOW + 1),
        make_job("nothing-to-do", JobState.FINISHED, due_at=None),
        make_job("delivering", JobState.DELIVERING, due_at=500.0),
        make_job("middle", due_at=2000.0),
    ]:
        await store.add(job)

    claimed = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 2)
    rest = await store.claim("me", [JobState.ACCEPTED, JobState.RUNNING], NOW, NOW + 30, 10)

    assert [job.id for job in claimed] == ["sooner", "middle"]
    assert [job.id for job in rest] == ["later"]
    assert all(job.lease_owner == "me" and job.lease_until == NOW + 30 for job in claimed)
    assert claimed[0].request == REQUEST  # with its bodies
    assert (await store.get("sooner")).lease_owner == "me"  # type: ignore[union-attr]


async def test_claim_comes_with_the_bodies(store: JobStore) -> None:
    await store.add(FULL_JOB)
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    done = finished(claimed).released(1000.0)
    await store.update(done, "me")

    [again] = await store.claim("me", [JobState.DELIVERING], NOW, NOW + 30, 1)

    assert again.request == FULL_JOB.request
    assert again.result == RESULT
    assert again.light() == done.leased("me", NOW + 30).light()


async def test_a_leased_job_is_claimed_by_another_only_after_its_lease_expired(
    store: JobStore,
) -> None:
    await store.add(make_job("a"))
    await store.claim("dead-replica", [JobState.ACCEPTED], NOW, NOW + 30, 1)

    assert await store.claim("me", [JobState.ACCEPTED], NOW + 29, NOW + 60, 1) == []
    [taken] = await store.claim("me", [JobState.ACCEPTED], NOW + 31, NOW + 60, 1)

    assert taken.lease_owner == "me"
    with pytest.raises(LeaseLost):
        await store.update(taken.to(JobState.RUNNING), "dead-replica")


async def test_concurrent_claims_never_hand_one_job_to_two_owners(store: JobStore) -> None:
    for n in range(20):
        await store.add(make_job(f"job-{n}"))

    batches = await asyncio.gather(
        *(store.claim(f"owner-{n}", [JobState.ACCEPTED], NOW, NOW + 30, 3) for n in range(10))
    )

    ids = [job.id for batch in batches for job in batch]
    assert sorted(ids) == sorted(f"job-{n}" for n in range(20))


async def test_renew_extends_only_the_leases_still_held(store: JobStore) -> None:
    for job_id in ("mine", "lost", "free"):
        await store.add(make_job(job_id))
    await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 2)  # mine, lost (same due)
    await store.claim("other", [JobState.ACCEPTED], NOW + 31, NOW + 60, 3)  # takes all three

    assert await store.renew("me", ["mine", "lost", "free", "ghost"], NOW + 90) == set()
    assert await store.renew("other", ["mine", "free"], NOW + 90) == {"mine", "free"}
    assert (await store.get("mine")).lease_until == NOW + 90  # type: ignore[union-attr]
    assert (await store.get("lost")).lease_until == NOW + 60  # type: ignore[union-attr]


async def test_expire_leases_makes_every_held_job_claimable(store: JobStore) -> None:
    for job_id in ("a", "b", "c"):
        await store.add(make_job(job_id))
    await store.claim("dead-process", [JobState.ACCEPTED], NOW, NOW + 3600, 2)

    assert await store.expire_leases() == 2

    claimed = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10)
    assert sorted(job.id for job in claimed) == ["a", "b", "c"]


async def test_renew_until_now_hands_the_jobs_on(store: JobStore) -> None:
    await store.add(make_job("a"))
    await store.claim("stopping", [JobState.ACCEPTED], NOW, NOW + 3600, 1)

    assert await store.renew("stopping", ["a"], NOW) == {"a"}

    [taken] = await store.claim("me", [JobState.ACCEPTED], NOW + 0.001, NOW + 30, 1)
    assert taken.lease_owner == "me"


# -- page, redeliver, counts ---------------------------------------------------------------------


async def _add_listing(store: JobStore) -> None:
    for job in [
        make_job("d1", JobState.DEAD, created_at=1000.0),
        make_job("ok", JobState.DELIVERED, created_at=1500.0),
        make_job("d2", JobState.DEAD, created_at=2000.0),
        make_job("d3b", JobState.DEAD, created_at=3000.0),
        make_job("d3a", JobState.DEAD, created_at=3000.0),
        make_job("run", JobState.RUNNING, created_at=4000.0),
    ]:
        await store.add(replace(job, due_at=None))


async def test_page_lists_newest_first_with_a_cursor(store: JobStore) -> None:
    await _add_listing(store)

    first, cursor = await store.page(JobState.DEAD, 2, None)
    second, end = await store.page(JobState.DEAD, 2, cursor)

    assert [job.id for job in first] == ["d3b", "d3a"]
    assert [job.id for job in second] == ["d2", "d1"]
    assert end is None or (await store.page(JobState.DEAD, 2, end)) == ([], None)
    assert all(job.request is None for job in first + second)


async def test_page_of_any_state(store: JobStore) -> None:
    await _add_listing(store)

    jobs, cursor = await store.page(None, 10, None)

    assert [job.id for job in jobs] == ["run", "d3b", "d3a", "d2", "ok", "d1"]
    assert cursor is None


async def test_redeliver_one_puts_it_back_on_a_fresh_schedule(store: JobStore) -> None:
    dead = replace(
        make_job("d", JobState.DEAD, due_at=None, reason="gave up"),
        attempts=(Attempt(1.0, 500, None, 0.1), Attempt(2.0, 500, None, 0.1)),
    )
    await store.add(dead)

    assert await store.redeliver(NOW, job_id="d") == 1
    assert await store.redeliver(NOW, job_id="d") == 0  # now delivering
    assert await store.redeliver(NOW, job_id="ghost") == 0

    job = await store.get("d")
    assert job is not None
    assert (job.state, job.due_at, job.delivery_base, job.reason, job.lease_owner) == (
        JobState.DELIVERING,
        NOW,
        2,
        None,
        None,
    )


async def test_redeliver_in_bulk_moves_at_most_limit_newest_first(store: JobStore) -> None:
    await _add_listing(store)

    assert await store.redeliver(NOW, state=JobState.DEAD, limit=3) == 3

    left, _ = await store.page(JobState.DEAD, 10, None)
    assert [job.id for job in left] == ["d1"]
    assert await store.redeliver(NOW, state=JobState.RUNNING, limit=10) == 0


async def test_counts_by_state(store: JobStore) -> None:
    await _add_listing(store)

    counts = await store.counts()

    assert counts[JobState.DEAD] == 4
    assert counts[JobState.DELIVERED] == 1
    assert counts[JobState.RUNNING] == 1
    assert counts[JobState.ACCEPTED] == 0


# -- retention ---------------------------------------------------------------------------------

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

    removed = await store.purge(CUTOFF, 1000)

    assert removed == sum(purged for _, purged in PURGE_CASES)
    left = {job.id: await store.get(job.id) for job, _ in PURGE_CASES}
    assert left == {job.id: None if purged else job.light() for job, purged in PURGE_CASES}
    assert await store.purge(CUTOFF, 1000) == 0


async def test_purge_goes_in_batches_of_at_most_limit(store: JobStore) -> None:
    for n in range(7):
        await store.add(make_job(f"old-{n}", JobState.DEAD, updated_at=1.0))

    assert [await store.purge(CUTOFF, 3) for _ in range(4)] == [3, 3, 1, 0]
    await store.compact()


async def test_purge_frees_the_idempotency_key(store: JobStore) -> None:
    old = replace(FULL_JOB, state=JobState.DEAD, updated_at=1.0)
    await store.add(old)
    await store.purge(CUTOFF, 10)

    again = replace(FULL_JOB, id="again")

    assert await store.add(again) == again


async def test_ping_succeeds_on_a_working_store(store: JobStore) -> None:
    await store.ping()
