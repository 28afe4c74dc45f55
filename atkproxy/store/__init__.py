"""Job stores: one small interface, one module per backend, chosen by the URL scheme.

    memory://                     in-process, for tests and throwaway runs
    sqlite:///relative/jobs.db    the embedded default (WAL mode); sqlite:////abs/jobs.db
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Protocol

from ..jobs import Job, JobState


class JobStore(Protocol):
    async def add(self, job: Job) -> None:
        """Record a new job durably; returns only once it is committed."""

    async def save(self, job: Job) -> None:
        """Replace the stored job of the same id (it must exist)."""

    async def get(self, job_id: str) -> Job | None: ...

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        """Jobs in any of `states`, oldest first (recovery and listing)."""

    async def purge(self, finished_before: float) -> int:
        """Drop delivered, dead and finished jobs last updated before the given time."""

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
