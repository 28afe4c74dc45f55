"""MeasuredStore: every store operation is timed under its own name and answers as the store."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from atkproxy.jobs import JobState
from atkproxy.metrics import OPERATIONS, MeasuredStore, Metrics, Scrape
from atkproxy.store.memory import MemoryStore
from tests.unit.test_store import FULL_JOB, NOW


def store_counts(metrics: Metrics) -> dict[str, float]:
    text = metrics.exposition(Scrape())[0].decode()
    return {
        s.labels["operation"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "atkproxy_store_seconds_count"
    }


async def test_each_operation_is_timed_once_under_its_name() -> None:
    metrics = Metrics()
    store = MeasuredStore(MemoryStore(), metrics)
    owner, states = "w", [JobState.ACCEPTED]

    assert await store.add(FULL_JOB) == FULL_JOB
    assert [j.id for j in await store.claim(owner, states, NOW + 1e6, NOW + 2e6, 1)] == [
        FULL_JOB.id
    ]
    assert await store.renew(owner, [FULL_JOB.id], NOW + 3e6) == {FULL_JOB.id}
    assert await store.expire_leases() == 1
    await store.update(FULL_JOB.released(None), None)
    assert (await store.get(FULL_JOB.id)) is not None
    assert await store.result(FULL_JOB.id) is None
    assert len((await store.page(None, 10, None))[0]) == 1
    assert await store.redeliver(NOW, job_id=FULL_JOB.id) == 0  # not dead nor delivered
    assert await store.purge(NOW, 10) == 0
    await store.compact()
    assert (await store.counts())[JobState.ACCEPTED] == 1
    await store.ping()
    await store.close()

    assert store_counts(metrics) == dict.fromkeys(OPERATIONS, 1.0)


async def test_a_failing_operation_is_timed_too() -> None:
    class Broken(MemoryStore):
        async def ping(self) -> None:
            raise OSError("gone")

    metrics = Metrics()
    store = MeasuredStore(Broken(), metrics)
    with pytest.raises(OSError):
        await store.ping()
    assert store_counts(metrics)["ping"] == 1
