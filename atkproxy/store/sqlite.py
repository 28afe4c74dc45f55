"""SQLite job store: the embedded default, one file in WAL mode.

All work happens on one thread that owns the connection. Writes are group-committed:
the writes that arrive while a commit is under way are applied together in the next
transaction, so under load one fsync (`synchronous=FULL`) carries many jobs, and a
write's caller resumes only once its transaction is committed. `add` returning means
the job survives a crash as well as a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..jobs import TERMINAL, Job, JobState, dumps, loads

T = TypeVar("T")

_URL_PREFIX = "sqlite:///"

_SETUP = """
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
PRAGMA busy_timeout = 5000;
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
ON CONFLICT (id) DO NOTHING
"""

_UPDATE = """
UPDATE jobs SET state = :state, created_at = :created_at, updated_at = :updated_at,
    record = :record
WHERE id = :id
"""

Statement = tuple[str, dict[str, Any] | list[Any]]


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


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)  # DML opens a transaction; `with conn` commits it
    try:
        conn.executescript(_SETUP)
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteStore:
    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread
        self._pending: list[tuple[Statement, asyncio.Future[int]]] = []
        self._committer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str) -> SQLiteStore:
        path = db_path(url)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atkproxy-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, _connect, path)
        except BaseException:
            thread.shutdown()
            raise
        return cls(conn, thread)

    async def add(self, job: Job) -> None:
        if await self._write((_INSERT, _row(job))) == 0:
            raise KeyError(f"job {job.id} exists")

    async def save(self, job: Job) -> None:
        if await self._write((_UPDATE, _row(job))) == 0:
            raise KeyError(f"job {job.id} is not stored")

    async def get(self, job_id: str) -> Job | None:
        rows = await self._read("SELECT record FROM jobs WHERE id = ?", [job_id])
        return next((loads(row[0]) for row in rows), None)

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        wanted = [state.value for state in states]
        # rowid breaks ties in insertion order, as the memory store does.
        sql = (
            f"SELECT record FROM jobs WHERE state IN ({_placeholders(len(wanted))})"
            " ORDER BY created_at, rowid"
        )
        return [loads(row[0]) for row in await self._read(sql, wanted)]

    async def purge(self, finished_before: float) -> int:
        terminal = [state.value for state in TERMINAL]
        sql = f"DELETE FROM jobs WHERE state IN ({_placeholders(len(terminal))}) AND updated_at < ?"
        return await self._write((sql, [*terminal, finished_before]))

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer
        await self._run(self._conn.close)
        self._thread.shutdown()

    # -- the store's thread ---------------------------------------------------------

    async def _run(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _read(self, sql: str, params: list[Any]) -> list[Any]:
        rows: list[Any] = await self._run(lambda: self._conn.execute(sql, params).fetchall())
        return rows

    async def _write(self, statement: Statement) -> int:
        """Queue one statement for the next group commit; its changed row count once committed."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((statement, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        return await asyncio.shield(done)

    async def _commit_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                counts = await self._run(self._apply, [statement for statement, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    done.set_exception(exc)
            else:
                for (_, done), count in zip(batch, counts, strict=True):
                    done.set_result(count)

    def _apply(self, statements: list[Statement]) -> list[int]:
        with self._conn:  # one transaction: all of the batch is committed, or none
            return [self._conn.execute(sql, params).rowcount for sql, params in statements]
