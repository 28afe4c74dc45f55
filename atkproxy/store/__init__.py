"""Job stores: one interface, one module per backend, chosen by the URL scheme.

    memory://                     in-process, for tests and throwaway runs
    sqlite:///relative/jobs.db    the embedded default (WAL mode); sqlite:////abs/jobs.db

The store is the schedule. Workers `claim` due jobs under a lease, `renew` it while they
work, and `update` the job when a step is done (its next state, its next due time, the
lease kept or released). Many processes may claim from one store: a claim takes a job
only when it is unleased or its lease expired, and an update is refused (LeaseLost) when
the lease is no longer the writer's. So a dead process, or a save that failed, delays a
job until its lease expires and no longer.

Exceptions (besides the backend's own errors, which mean "cannot do it now"):

    LookupError
    └── JobMissing        update of a job that is not stored
    LeaseLost             the writer no longer holds the job's lease
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Protocol

from ..jobs import Job, JobState, UpstreamResult


class JobMissing(LookupError):
    """The job is not (or no longer) stored."""


class LeaseLost(Exception):
    """Another owner holds the job now (its lease had expired): the writer must let go."""


class JobStore(Protocol):
    async def add(self, job: Job) -> Job:
        """Record a new job with its bodies; returns once it is durable.

        A job whose `idempotency` is already recorded is not added: the recorded job is
        returned instead (with `reply` and `fingerprint`), and the caller compares."""

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        """Lease to `owner` until `until` at most `limit` jobs in `states` that are due
        (`due_at <= now`) and not leased (or whose lease expired before `now`), earliest due
        first; returned with their bodies."""

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        """Extend the leases `owner` still holds among `job_ids`; returns those ids."""

    async def update(self, job: Job, owner: str | None) -> None:
        """Write the job's small fields (state, due time, lease, attempts...) and, when
        `job.result` is set and none is stored yet, its result. `owner` must hold the
        stored job's lease (None: the stored job must be unleased or its lease expired);
        else LeaseLost. JobMissing when the job is not stored."""

    async def get(self, job_id: str) -> Job | None:
        """The job without bodies (cheap, whatever their size)."""

    async def result(self, job_id: str) -> UpstreamResult | None:
        """The job's upstream result with its body, None when there is none (yet)."""

    async def page(
        self, state: JobState | None, limit: int, after: str | None
    ) -> tuple[list[Job], str | None]:
        """Jobs (without bodies), newest first, in `state` (None: any); `after` is the
        cursor a previous page returned. Returns the page and the next cursor (None: last)."""

    async def redeliver(
        self,
        now: float,
        *,
        job_id: str | None = None,
        state: JobState | None = None,
        limit: int = 1,
    ) -> int:
        """Put unleased `dead`/`delivered` jobs back to `delivering`, due `now`, with a fresh
        retry schedule (delivery_base = attempts so far, reason cleared): the one job
        `job_id`, or up to `limit` jobs in `state`, newest first. Returns how many moved."""

    async def purge(self, before: float, limit: int) -> int:
        """Drop at most `limit` jobs in a terminal state last updated before `before`."""

    async def compact(self) -> None:
        """Give the space of purged jobs back (a no-op where there is nothing to do)."""

    async def counts(self) -> dict[JobState, int]:
        """How many jobs are in each state (cheap: for metrics and the backlog)."""

    async def ping(self) -> None:
        """A cheap real write; raises when the store cannot take a write now."""

    async def close(self) -> None: ...


class StoreUnavailable(Exception):
    """The store named by store.url cannot be opened; the message says why."""


async def open_store(url: str) -> JobStore:
    if url.startswith("memory://"):
        from .memory import MemoryStore

        return MemoryStore()
    if url.startswith("sqlite://"):
        from .sqlite import SQLiteStore

        try:
            return await SQLiteStore.open(url)
        except (OSError, sqlite3.Error) as exc:
            raise StoreUnavailable(f"store.url: cannot open {url}: {exc}") from exc
    raise ValueError(f"store.url: unsupported scheme in {url!r} (use memory:// or sqlite:///path)")
