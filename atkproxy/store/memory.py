"""In-memory job store: same behaviour as the durable ones, nothing survives the process."""

from __future__ import annotations

from collections.abc import Iterable

from ..jobs import Job, JobState

TERMINAL = frozenset({JobState.DELIVERED, JobState.DEAD, JobState.FINISHED})


class MemoryStore:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    async def add(self, job: Job) -> None:
        if job.id in self._jobs:
            raise KeyError(f"job {job.id} exists")
        self._jobs[job.id] = job

    async def save(self, job: Job) -> None:
        if job.id not in self._jobs:
            raise KeyError(f"job {job.id} is not stored")
        self._jobs[job.id] = job

    async def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        wanted = set(states)
        found = [job for job in self._jobs.values() if job.state in wanted]
        return sorted(found, key=lambda job: job.created_at)

    async def purge(self, finished_before: float) -> int:
        old = [
            job.id
            for job in self._jobs.values()
            if job.state in TERMINAL and job.updated_at < finished_before
        ]
        for job_id in old:
            del self._jobs[job_id]
        return len(old)

    async def close(self) -> None:
        self._jobs.clear()
