"""In-memory job store: the reference behaviour of the interface; nothing survives the process.

Jobs are frozen dataclasses whose parts are never mutated, so the store can hand out the
objects it keeps; reads for status drop the bodies, as the durable stores do.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import replace

from ..jobs import REDELIVERABLE, TERMINAL, Job, JobState, UpstreamResult
from . import JobMissing, LeaseLost


def cursor_of(job: Job) -> str:
    return f"{job.created_at!r}_{job.id}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    at, _, job_id = cursor.partition("_")
    try:
        return float(at), job_id
    except ValueError:
        raise ValueError(f"not a job list cursor: {cursor!r}") from None


def newest_first(job: Job) -> tuple[float, str]:
    return (-job.created_at, _desc(job.id))


def _desc(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def lease_free(job: Job, now: float) -> bool:
    return job.lease_owner is None or job.lease_until < now


class MemoryStore:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._keys: dict[str, str] = {}  # idempotency digest -> job id

    async def add(self, job: Job) -> Job:
        if job.idempotency is not None and job.idempotency in self._keys:
            return self._jobs[self._keys[job.idempotency]]
        if job.id in self._jobs:
            raise KeyError(f"job {job.id} exists")
        self._jobs[job.id] = job
        if job.idempotency is not None:
            self._keys[job.idempotency] = job.id
        return job

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        due = [
            job
            for job in self._jobs.values()
            if job.state in states
            and job.due_at is not None
            and job.due_at <= now
            and lease_free(job, now)
        ]
        due.sort(key=lambda job: job.due_at or 0.0)
        claimed = [job.leased(owner, until) for job in due[:limit]]
        for job in claimed:
            self._jobs[job.id] = job
        return claimed

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        held = {i for i in job_ids if i in self._jobs and self._jobs[i].lease_owner == owner}
        for job_id in held:
            self._jobs[job_id] = replace(self._jobs[job_id], lease_until=until)
        return held

    async def update(self, job: Job, owner: str | None) -> None:
        stored = self._jobs.get(job.id)
        if stored is None:
            raise JobMissing(job.id)
        if not self._holds(stored, owner, time.time()):
            raise LeaseLost(job.id)
        keep = stored if stored.result is not None else job
        self._jobs[job.id] = replace(
            job, request=stored.request, reply=stored.reply, result=keep.result
        )

    @staticmethod
    def _holds(stored: Job, owner: str | None, now: float) -> bool:
        if owner is None:
            return lease_free(stored, now)
        return stored.lease_owner == owner

    async def get(self, job_id: str) -> Job | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.light()

    async def result(self, job_id: str) -> UpstreamResult | None:
        job = self._jobs.get(job_id)
        return None if job is None else job.result

    async def page(
        self, state: JobState | None, limit: int, after: str | None
    ) -> tuple[list[Job], str | None]:
        jobs = sorted(
            (j for j in self._jobs.values() if state is None or j.state is state), key=newest_first
        )
        if after is not None:
            at, job_id = parse_cursor(after)
            jobs = [j for j in jobs if (j.created_at, j.id) < (at, job_id)]
        shown = [job.light() for job in jobs[:limit]]
        more = len(jobs) > limit
        return shown, cursor_of(shown[-1]) if more and shown else None

    async def redeliver(
        self,
        now: float,
        *,
        job_id: str | None = None,
        state: JobState | None = None,
        limit: int = 1,
    ) -> int:
        if job_id is not None:
            candidates = [self._jobs[job_id]] if job_id in self._jobs else []
        else:
            candidates = sorted(
                (j for j in self._jobs.values() if j.state is state), key=newest_first
            )
        moved = 0
        for job in candidates:
            if moved >= limit or job.state not in REDELIVERABLE or not lease_free(job, now):
                continue
            self._jobs[job.id] = redelivered(job, now)
            moved += 1
        return moved

    async def purge(self, before: float, limit: int) -> int:
        old = [
            job
            for job in self._jobs.values()
            if job.state in TERMINAL and job.updated_at < before
        ][:limit]
        for job in old:
            del self._jobs[job.id]
            if job.idempotency is not None:
                self._keys.pop(job.idempotency, None)
        return len(old)

    async def compact(self) -> None:
        pass

    async def counts(self) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for job in self._jobs.values():
            counts[job.state] += 1
        return counts

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        self._jobs.clear()
        self._keys.clear()


def redelivered(job: Job, now: float) -> Job:
    """The job back to `delivering`, due now, on a fresh retry schedule."""
    return job.to(JobState.DELIVERING, delivery_base=len(job.attempts), reason=None).released(now)
