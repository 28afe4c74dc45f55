"""Credential headers never reach a durable store in clear text."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from atkproxy.jobs import Job, JobState, UpstreamRequest, dumps
from atkproxy.store.memory import MemoryStore
from atkproxy.store.sealed import SEALED, SealedStore

SECRET = "Bearer t0ps3cret"
HEADERS = [("Authorization", SECRET), ("X-Trace", "t1"), ("cookie", "sid=abc")]
PROTECTED = ["Authorization", "Cookie"]


def job() -> Job:
    request = UpstreamRequest("POST", "/o", HEADERS, b"{}")
    return Job(id="j1", instance_id="i1", request=request, created_at=1.0, updated_at=1.0)


def key() -> SecretStr:
    return SecretStr(Fernet.generate_key().decode())


async def raw(inner: MemoryStore) -> str:
    found = await inner.get("j1")
    assert found is not None
    return dumps(found)


async def test_with_a_key_values_are_encrypted_at_rest_and_read_back() -> None:
    inner = MemoryStore()
    store = SealedStore(inner, PROTECTED, key())
    await store.add(job())
    stored = await raw(inner)
    assert SECRET not in stored and "sid=abc" not in stored
    assert stored.count(SEALED) == 2
    assert (await store.get("j1")) == job()
    assert await store.in_states([JobState.ACCEPTED]) == [job()]


async def test_without_a_key_values_are_left_out_of_the_record() -> None:
    inner = MemoryStore()
    store = SealedStore(inner, PROTECTED, None)
    await store.add(job())
    recovered = await store.get("j1")
    assert recovered is not None
    assert recovered.request.headers == [("X-Trace", "t1")]
    assert SECRET not in await raw(inner)


@pytest.mark.parametrize("reader_key", [None, "other"], ids=["no-key", "another-key"])
async def test_a_value_that_cannot_be_decrypted_is_dropped(reader_key: str | None) -> None:
    inner = MemoryStore()
    await SealedStore(inner, PROTECTED, key()).add(job())
    reader = SealedStore(inner, PROTECTED, key() if reader_key else None)
    recovered = await reader.get("j1")
    assert recovered is not None
    assert recovered.request.headers == [("X-Trace", "t1")]


async def test_save_reseals_and_purge_and_close_pass_through() -> None:
    inner = MemoryStore()
    store = SealedStore(inner, PROTECTED, key())
    await store.add(job())
    await store.save(job().to(JobState.RUNNING))
    assert SECRET not in await raw(inner)
    assert await store.purge(finished_before=0) == 0
    await store.close()
    assert await inner.get("j1") is None
