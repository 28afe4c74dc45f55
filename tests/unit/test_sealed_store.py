"""Credential headers never reach a durable store in clear text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from atkproxy.jobs import Headers, Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.store import JobStore, open_store
from atkproxy.store.memory import MemoryStore
from atkproxy.store.sealed import SEALED, SealedStore

SECRET = "Bearer t0ps3cret"
HEADERS = [("Authorization", SECRET), ("X-Trace", "t1"), ("cookie", "sid=abc")]
PROTECTED = ["Authorization", "Cookie"]
NOW = 10_000.0
RESULT = UpstreamResult(200, [("Content-Type", "text/plain")], b"done")


def job(job_id: str = "j1", idempotency: str | None = None) -> Job:
    request = UpstreamRequest("POST", "/o", HEADERS, b"{}")
    return Job(
        id=job_id,
        instance_id="i1",
        method="POST",
        path_qs="/o",
        request=request,
        created_at=1.0,
        updated_at=1.0,
        due_at=1.0,
        idempotency=idempotency,
        reply=b"{}",
    )


def key() -> SecretStr:
    return SecretStr(Fernet.generate_key().decode())


@pytest.fixture(params=["memory", "sqlite"])
async def inner(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'jobs.db'}"
    store = await open_store(url)
    yield store
    await store.close()


async def stored_headers(inner: JobStore, state: JobState = JobState.ACCEPTED) -> Headers:
    """The request headers as the inner store keeps them (a lease that is over at once)."""
    [stored] = await inner.claim("peek", [state], NOW, 0.0, 1)
    assert stored.request is not None
    return stored.request.headers


async def claim_through(store: SealedStore) -> Job:
    [claimed] = await store.claim("worker", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    return claimed


async def test_with_a_key_values_are_encrypted_at_rest_and_opened_on_claim(
    inner: JobStore,
) -> None:
    store = SealedStore(inner, PROTECTED, key())

    assert await store.add(job()) == job()

    stored = await stored_headers(inner)
    assert SECRET not in str(stored) and "sid=abc" not in str(stored)
    assert [value.startswith(SEALED) for _, value in stored] == [True, False, True]
    assert (await claim_through(store)).request == job().request


async def test_without_a_key_values_are_left_out_of_the_record(inner: JobStore) -> None:
    await SealedStore(inner, PROTECTED, None).add(job())
    restarted = SealedStore(inner, PROTECTED, None)  # a new process: nothing in memory

    assert await stored_headers(inner) == [("X-Trace", "t1")]
    assert (await claim_through(restarted)).request == UpstreamRequest(
        "POST", "/o", [("X-Trace", "t1")], b"{}"
    )


async def test_without_a_key_a_waiting_job_keeps_its_values_in_memory(inner: JobStore) -> None:
    store = SealedStore(inner, PROTECTED, None)
    await store.add(job())

    claimed = await claim_through(store)  # the same process: the values are still there
    assert claimed.request is not None
    assert sorted(claimed.request.headers) == sorted(HEADERS)  # (credentials first)
    await store.update(claimed.to(JobState.RUNNING).released(None), "worker")  # done
    assert store._kept.size == 0


async def test_the_sqlite_file_never_holds_a_secret(tmp_path: Path) -> None:
    inner = await open_store(f"sqlite:///{tmp_path / 'jobs.db'}")
    store = SealedStore(inner, PROTECTED, key())
    await store.add(job())
    claimed = await claim_through(store)
    await store.update(claimed.to(JobState.RUNNING), "worker")
    await store.close()

    written = b"".join(path.read_bytes() for path in tmp_path.iterdir())  # noqa: ASYNC240
    assert b"t0ps3cret" not in written and b"sid=abc" not in written
    assert SEALED.encode() in written


@pytest.mark.parametrize("reader_key", [None, "other"], ids=["no-key", "another-key"])
async def test_a_value_that_cannot_be_decrypted_is_dropped(
    inner: JobStore, reader_key: str | None
) -> None:
    await SealedStore(inner, PROTECTED, key()).add(job())
    reader = SealedStore(inner, PROTECTED, key() if reader_key else None)

    assert (await claim_through(reader)).request.headers == [("X-Trace", "t1")]  # type: ignore[union-attr]


class RecordingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.updates: list[Job] = []

    async def update(self, job: Job, owner: str | None) -> None:
        self.updates.append(job)
        await super().update(job, owner)


async def test_update_hands_no_clear_header_to_the_store() -> None:
    inner = RecordingStore()
    store = SealedStore(inner, PROTECTED, key())
    await store.add(job())
    claimed = await claim_through(store)

    await store.update(claimed.to(JobState.RUNNING).with_result(RESULT).released(1.0), "worker")

    [written] = inner.updates
    assert SECRET not in repr(written)
    assert written.result == RESULT
    assert (await stored_headers(inner, JobState.RUNNING))[0][1].startswith(SEALED)


async def test_an_idempotent_repeat_returns_the_recorded_job(inner: JobStore) -> None:
    store = SealedStore(inner, PROTECTED, key())
    await store.add(job("first", idempotency="k"))

    recorded = await store.add(job("second", idempotency="k"))

    assert recorded.id == "first"
    assert recorded.request is None or recorded.request.headers == HEADERS


async def test_every_other_method_passes_through(inner: JobStore) -> None:
    store = SealedStore(inner, PROTECTED, key())
    await store.add(job())
    claimed = await claim_through(store)

    assert await store.renew("worker", ["j1"], NOW + 60) == {"j1"}
    await store.update(claimed.to(JobState.RUNNING).with_result(RESULT).released(None), "worker")
    assert await store.get("j1") == await inner.get("j1")
    assert await store.result("j1") == RESULT
    assert await store.page(None, 10, None) == await inner.page(None, 10, None)
    assert (await store.counts())[JobState.RUNNING] == 1
    assert await store.redeliver(NOW, job_id="j1") == 0  # running: not redeliverable
    assert await store.purge(NOW, 10) == 0  # running: not terminal
    await store.compact()
    await store.ping()
    await store.close()
