"""In-memory job store: same behaviour as the durable ones, nothing survives the process.

Jobs are kept as their serialised records, as the durable stores keep them, so the memory
store exercises the same encoding and hands out no shared objects.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..jobs import TERMINAL, Job, JobState, dumps, loads


class MemoryStore:
    def __init__(self) -> None:
        self._records: dict[str, tuple[JobState, float, float, str]] = {}

    async def add(self, job: Job) -> None:
        if job.id in self._records:
            raise KeyError(f"job {job.id} exists")
        self._put(job)

    async def save(self, job: Job) -> None:
        if job.id not in self._records:
            raise KeyError(f"job {job.id} is not stored")
        self._put(job)

    async def get(self, job_id: str) -> Job | None:
        entry = self._records.get(job_id)
        return None if entry is None else loads(entry[3])

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        wanted = set(states)
        found = [entry for entry in self._records.values() if entry[0] in wanted]
        # sorted() is stable: ties stay in insertion order, as rowid orders them in SQLite
        return [loads(entry[3]) for entry in sorted(found, key=lambda entry: entry[1])]

    async def purge(self, finished_before: float) -> int:
        old = [
            job_id
            for job_id, (state, _, updated_at, _) in self._records.items()
            if state in TERMINAL and updated_at < finished_before
        ]
        for job_id in old:
            del self._records[job_id]
        return len(old)

    async def close(self) -> None:
        self._records.clear()

    def _put(self, job: Job) -> None:
        self._records[job.id] = (job.state, job.created_at, job.updated_at, dumps(job))
