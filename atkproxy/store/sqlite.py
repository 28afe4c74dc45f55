"""SQLite job store: the embedded default, one file in WAL mode.

Every write is a single statement on an autocommit connection, so it is its own
transaction: when `add` or `save` returns, the job is committed, and with
`synchronous=FULL` it survives a crash as well as a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from ..jobs import TERMINAL, Job, JobState, dumps, loads

_URL_PREFIX = "sqlite:///"
_BUSY_TIMEOUT_MS = 5000

_SETUP = f"""
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS};
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL,
    updated_at REAL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs (state, created_at);
"""

_INSERT = """
INSERT INTO jobs (id, state, created_at, updated_at, record)
VALUES (:id, :state, :created_at, :updated_at, :record)
"""

_UPDATE = """
UPDATE jobs SET state = :state, created_at = :created_at, updated_at = :updated_at,
    record = :record
WHERE id = :id
"""


def db_path(url: str) -> Path:
    """`sqlite:///rel/jobs.db` -> rel/jobs.db; `sqlite:////abs/jobs.db` -> /abs/jobs.db."""
    path = url.removeprefix(_URL_PREFIX)
    if path == url or not path:
        raise ValueError(f"store.url: expected sqlite:///path/to/jobs.db, got {url!r}")
    return Path(path)


def _row(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "state": job.state.value,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "record": dumps(job),
    }


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


class SQLiteStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, url: str) -> SQLiteStore:
        path = db_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        try:
            await db.executescript(_SETUP)
        except BaseException:
            await db.close()
            raise
        return cls(db)

    async def add(self, job: Job) -> None:
        try:
            await self._write(_INSERT, _row(job))
        except aiosqlite.IntegrityError as exc:
            raise KeyError(f"job {job.id} exists") from exc

    async def save(self, job: Job) -> None:
        if await self._write(_UPDATE, _row(job)) == 0:
            raise KeyError(f"job {job.id} is not stored")

    async def get(self, job_id: str) -> Job | None:
        rows = await self._db.execute_fetchall("SELECT record FROM jobs WHERE id = ?", (job_id,))
        return next((loads(row[0]) for row in rows), None)

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [state.value for state in states]
        # rowid breaks ties in insertion order, as the memory store does.
        sql = (
            f"SELECT record FROM jobs WHERE state IN ({_placeholders(len(wanted))})"
            " ORDER BY created_at, rowid"
        )
        return [loads(row[0]) for row in await self._db.execute_fetchall(sql, wanted)]

    async def purge(self, finished_before: float) -> int:
        terminal = [state.value for state in TERMINAL]
        sql = f"DELETE FROM jobs WHERE state IN ({_placeholders(len(terminal))}) AND updated_at < ?"
        return await self._write(sql, [*terminal, finished_before])

    async def close(self) -> None:
        await self._db.close()

    async def _write(self, sql: str, params: dict[str, Any] | list[Any]) -> int:
        """Run one statement (its own transaction) and return the number of rows it changed."""
        async with self._db.execute(sql, params) as cursor:
            return cursor.rowcount
