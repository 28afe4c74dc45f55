"""SQLite job store: the embedded default, one file in WAL mode (layout: sqlite_schema).

All work happens on one thread that owns the connection. Writes (add, claim, renew,
update, redeliver, purge, ping) are group-committed: the writes that arrive while a commit
is under way are applied together in the next transaction, and one that fails (a duplicate
id, a lost lease) fails alone (the batch is then run again, a savepoint per write); a
write's caller resumes only once the transaction is committed (`synchronous=FULL`). `add`
returning means the job survives a crash as well as a restart.

Reads for status (`get`, `page`, `counts`) select small columns only, never the bodies.

Nothing long holds the thread, so an accept never waits long: retention deletes 100 jobs
per transaction, committed apart and only when no other write waits; `compact` gives
space back 128 pages per transaction; and the WAL is copied back into the file by a
second connection on a thread of its own (Checkpointer) rather than inside a commit.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import structlog

from ..jobs import REDELIVERABLE, TERMINAL, Job, JobState, UpstreamResult
from . import JobMissing, LeaseLost
from .memory import cursor_of, parse_cursor
from .sqlite_schema import (
    MIN_SQLITE,
    MUTABLE,
    SMALL,
    SMALL_COLUMNS,
    UnreadableRow,
    connect,
    decode_headers,
    insert_job,
    insert_result,
    job_from_row,
    load_bodies,
    mutable_params,
    ping,
)

log = structlog.get_logger("atkproxy.store")

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

_URL_PREFIX = "sqlite:///"
PURGE_BATCH = 100  # jobs deleted per transaction: a few milliseconds
CHECKPOINT_AFTER = 64  # writes committed between two checkpoints off the writer's thread
BACKGROUND_WEIGHT = 16  # a purge batch writes about as many pages as this many accepts
VACUUM_STEP = 128  # pages given back per transaction (512 KiB of 4 KiB pages)

_FREE = "(lease_owner IS NULL OR lease_until < :now)"
_UPDATE = (
    f"UPDATE jobs SET {', '.join(f'{c} = :{c}' for c in MUTABLE)}"
    " WHERE id = :id AND {lease} RETURNING seq"
)
_REDELIVER = f"""
    UPDATE jobs SET state = 'delivering', due_at = :now, reason = NULL,
        delivery_base = json_array_length(attempts), lease_owner = NULL, lease_until = 0.0,
        updated_at = :updated_at
    WHERE {{which}} AND state IN ('dead', 'delivered') AND {_FREE}
"""
_DUE = f"""
    SELECT due_at, seq FROM jobs WHERE state = :state AND due_at <= :now AND {_FREE}
    ORDER BY due_at, seq LIMIT :limit
"""
_TERMINAL = ", ".join(f"'{state.value}'" for state in sorted(TERMINAL))
_DUE_AT = SMALL.index("due_at")


def db_path(url: str) -> Path:
    """`sqlite:///rel/jobs.db` -> rel/jobs.db; `sqlite:////abs/jobs.db` -> /abs/jobs.db."""
    path = url.removeprefix(_URL_PREFIX)
    if path == url or not path:
        raise ValueError(f"store.url: expected sqlite:///path/to/jobs.db, got {url!r}")
    return Path(path)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class Checkpointer:
    """Copies the WAL back into the database file on a connection and thread of its own.

    Left to itself, SQLite checkpoints inside the commit that finds the WAL over 1000
    pages, and the writes queued behind that commit wait tens of milliseconds. A PASSIVE
    checkpoint from another connection does that work without blocking the writer, so
    the one inside a commit finds (almost) nothing left to copy. Best effort: a failure
    is logged, and SQLite's own checkpoint remains the backstop."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atkproxy-sqlite-ckpt")
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._writes = 0

    def wrote(self, weight: int) -> None:
        """`weight` more writes were committed; checkpoint when enough have piled up."""
        self._writes += weight
        if self._writes >= CHECKPOINT_AFTER and (self._task is None or self._task.done()):
            self._writes = 0
            self._task = asyncio.create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._passive)
        except (sqlite3.Error, OSError) as exc:
            log.warning("store: WAL checkpoint failed", error=str(exc))

    def _passive(self) -> None:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, isolation_level=None)
        self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def settled(self) -> None:
        """Once the checkpoint under way, if any, is over."""
        if self._task is not None:
            await self._task

    async def close(self) -> None:
        await self.settled()
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
        self._thread.shutdown()


class SQLiteStore:
    def __init__(
        self, conn: sqlite3.Connection, thread: ThreadPoolExecutor, checkpointer: Checkpointer
    ) -> None:
        self._conn = conn
        self._thread = thread
        self._checkpointer = checkpointer
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._background: list[tuple[Op, asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> SQLiteStore:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise sqlite3.NotSupportedError(
                f"SQLite {sqlite3.sqlite_version} is too old (3.35 or newer is needed)"
            )
        path = db_path(url)
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atkproxy-sqlite")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(thread, connect, path)
        except BaseException:
            thread.shutdown()
            raise
        return cls(conn, thread, Checkpointer(path))

    # -- writes ------------------------------------------------------------------------

    async def add(self, job: Job) -> Job:
        recorded: Job = await self._write(lambda conn: _add(conn, job))
        return recorded

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        wanted = [state.value for state in states]
        claimed: list[Job] = await self._write(
            lambda conn: _claim(conn, owner, wanted, now, until, limit)
        )
        return claimed

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        ids = list(job_ids)
        if not ids:
            return set()
        sql = (
            f"UPDATE jobs SET lease_until = ? WHERE lease_owner = ? AND id IN ({_marks(len(ids))})"
            " RETURNING id"
        )
        rows = await self._write(lambda conn: conn.execute(sql, [until, owner, *ids]).fetchall())
        return {row[0] for row in rows}

    async def expire_leases(self) -> int:
        sql = "UPDATE jobs SET lease_owner = NULL, lease_until = 0 WHERE lease_owner IS NOT NULL"
        count: int = await self._write(lambda conn: conn.execute(sql).rowcount)
        return count

    async def update(self, job: Job, owner: str | None) -> None:
        now = time.time()
        await self._write(lambda conn: _update(conn, job, owner, now))

    async def redeliver(
        self,
        now: float,
        *,
        job_id: str | None = None,
        state: JobState | None = None,
        limit: int = 1,
    ) -> int:
        if limit <= 0 or (job_id is None and state not in REDELIVERABLE):
            return 0
        params: dict[str, Any] = {"now": now, "updated_at": time.time()}
        if job_id is not None:
            sql = _REDELIVER.format(which="id = :id")
            params["id"] = job_id
        else:
            sql = _REDELIVER.format(
                which="seq IN (SELECT seq FROM jobs WHERE state = :state AND "
                f"{_FREE} ORDER BY created_at DESC, id DESC LIMIT :limit)"
            )
            params |= {"state": str(state), "limit": limit}
        moved: int = await self._write(lambda conn: conn.execute(sql, params).rowcount)
        return moved

    async def purge(self, before: float, limit: int) -> int:
        removed = 0
        while removed < limit:
            batch = min(PURGE_BATCH, limit - removed)
            op = functools.partial(_purge, before=before, limit=batch)
            count: int = await self._write(op, background=True)
            removed += count
            if count < batch:
                break
        return removed

    async def compact(self) -> None:
        # in steps, each its own transaction, so writes waiting meanwhile get their turn
        while await self._run(_vacuum_step, self._conn):
            pass
        await self._run(lambda: self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall())

    async def ping(self) -> None:
        await self._write(ping)

    # -- reads -------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None:
        sql = f"SELECT {SMALL_COLUMNS} FROM jobs WHERE id = ?"
        rows = await self._read(lambda conn: conn.execute(sql, [job_id]).fetchall())
        return next((job_from_row(row) for row in rows), None)

    async def result(self, job_id: str) -> UpstreamResult | None:
        sql = (
            "SELECT status, headers, body, error, not_sent FROM results"
            " WHERE seq = (SELECT seq FROM jobs WHERE id = ?)"
        )
        rows = await self._read(lambda conn: conn.execute(sql, [job_id]).fetchall())
        return next(
            (
                UpstreamResult(status, decode_headers(headers), body, error, bool(not_sent))
                for status, headers, body, error, not_sent in rows
            ),
            None,
        )

    async def page(
        self, state: JobState | None, limit: int, after: str | None
    ) -> tuple[list[Job], str | None]:
        where, params = ["1"], list[Any]()
        if state is not None:
            where.append("state = ?")
            params.append(state.value)
        if after is not None:
            where.append("(created_at, id) < (?, ?)")
            params.extend(parse_cursor(after))
        sql = (
            f"SELECT {SMALL_COLUMNS} FROM jobs WHERE {' AND '.join(where)}"
            " ORDER BY created_at DESC, id DESC LIMIT ?"
        )
        rows = await self._read(lambda conn: conn.execute(sql, [*params, limit + 1]).fetchall())
        jobs = [job_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return jobs, cursor_of(jobs[-1]) if more and jobs else None

    async def counts(self) -> dict[JobState, int]:
        sql = "SELECT state, n FROM state_counts"
        counts = dict.fromkeys(JobState, 0)
        for state, count in await self._read(lambda conn: conn.execute(sql).fetchall()):
            counts[JobState(state)] = count
        return counts

    async def settled(self) -> None:
        """Once the writes queued and the checkpoint they started are over (tests)."""
        if self._committer is not None:
            await self._committer
        await self._checkpointer.settled()

    async def trace(self, callback: Callable[[str], None] | None) -> None:
        """Have `callback` see every SQL statement the store runs (tests, debugging)."""
        await self._run(self._conn.set_trace_callback, callback)

    async def close(self) -> None:
        if self._closed:  # a second close (the app's and a test's) is harmless
            return
        self._closed = True
        if self._committer is not None:
            await self._committer
        await self._checkpointer.close()  # first: the last connection to close ends the WAL
        await self._run(self._conn.close)
        self._thread.shutdown()

    # -- the store's thread ---------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        return await self._run(op, self._conn)

    async def _write(self, op: Op, *, background: bool = False) -> Any:
        """Queue `op` for the next group commit; what it returned once committed.

        A background op (a purge batch) is committed alone, and only when no other write
        waits: an accept waits for at most the one batch under way, never for the next."""
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        (self._background if background else self._pending).append((op, done))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_pending())
        # not shielded (a future less per write): a caller cancelled meanwhile cancels
        # `done`, and its op is still committed, as queued
        return await done

    async def _commit_pending(self) -> None:
        while self._pending or self._background:
            if self._pending:
                batch, self._pending = self._pending, []
                weight = len(batch)
            else:
                batch, weight = [self._background.pop(0)], BACKGROUND_WEIGHT
            try:
                outcomes = await self._run(_apply, self._conn, [op for op, _ in batch])
            except Exception as exc:
                for _, done in batch:
                    _settle(done, False, exc)
                continue
            for (_, done), (ok, value) in zip(batch, outcomes, strict=True):
                _settle(done, ok, value)
            self._checkpointer.wrote(weight)


def _settle(done: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """A write's outcome to its caller, unless the caller was cancelled meanwhile."""
    if done.cancelled():
        return
    if ok:
        done.set_result(value)
    else:
        done.set_exception(value)


def _apply(conn: sqlite3.Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    """Run `ops` in one transaction. Returns (True, value) or (False, exception) per op;
    raises when the commit fails.

    They run straight, with nothing between them; only when one raises (a duplicate id, a
    lost lease: rare) is the transaction undone and the batch run again with a savepoint
    per op, so that one that fails fails alone. Two statements per op fewer, on the thread
    every write goes through. Running an op again is safe: it reads and writes only the
    database, whose changes were undone."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        values = [op(conn) for op in ops]
    except Exception:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return _apply_apart(conn, ops)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    _commit(conn)
    return [(True, value) for value in values]


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _apply_apart(conn: sqlite3.Connection, ops: list[Op]) -> list[tuple[bool, Any]]:
    """Run `ops` in one transaction, each in a savepoint: one that raises is undone alone."""
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op(conn)))
            except Exception as exc:
                if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
                    raise  # the file's fault, not this op's: the whole batch fails
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, exc))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


# -- the writes, run on the store's thread inside a transaction -------------------------


def _add(conn: sqlite3.Connection, job: Job) -> Job:
    if job.idempotency is not None:
        sql = f"SELECT seq, {SMALL_COLUMNS} FROM jobs WHERE idempotency = ?"
        row = conn.execute(sql, [job.idempotency]).fetchone()
        if row is not None:
            _, reply, _ = load_bodies(conn, [row[0]])[row[0]]
            return job_from_row(row[1:]).changed(reply=reply)
    try:
        insert_job(conn, job)
    except sqlite3.IntegrityError as exc:
        if "jobs.id" not in str(exc):  # another constraint: a bug, not a duplicate
            raise
        raise KeyError(f"job {job.id} exists") from exc
    return job


def _claim(
    conn: sqlite3.Connection, owner: str, states: list[str], now: float, until: float, limit: int
) -> list[Job]:
    # one ordered range scan per state (`state IN (...)` would sort every due job of those
    # states), merged here; the lease is taken in the same transaction
    due: list[tuple[float, int]] = []
    for state in states:
        due += conn.execute(_DUE, {"state": state, "now": now, "limit": limit}).fetchall()
    seqs = [seq for _, seq in sorted(due)[:limit]]
    if not seqs:
        return []
    sql = (
        f"UPDATE jobs SET lease_owner = ?, lease_until = ? WHERE seq IN ({_marks(len(seqs))})"
        f" RETURNING seq, {SMALL_COLUMNS}"
    )
    rows = conn.execute(sql, [owner, until, *seqs]).fetchall()
    rows.sort(key=lambda row: (row[1 + _DUE_AT], row[0]))  # RETURNING has no order
    bodies = load_bodies(conn, seqs)
    claimed = []
    for row in rows:
        try:
            job = job_from_row(row[1:])
        except UnreadableRow as exc:
            _set_aside(conn, row[0], str(exc))
            continue
        request, reply, result = bodies.get(row[0], (None, None, None))
        claimed.append(job.changed(request=request, reply=reply, result=result))
    return claimed


def _set_aside(conn: sqlite3.Connection, seq: int, reason: str) -> None:
    """A job that cannot be read would be claimed, fail and be claimed again for ever: it
    goes to `dead` instead, where the job list shows it with the reason."""
    log.error("store: job set aside", reason=reason)
    conn.execute(
        "UPDATE jobs SET state = 'dead', due_at = NULL, lease_owner = NULL, lease_until = 0.0,"
        " reason = ? WHERE seq = ?",
        [reason[:500], seq],
    )


def _update(conn: sqlite3.Connection, job: Job, owner: str | None, now: float) -> None:
    lease = _FREE if owner is None else "lease_owner = :holder"
    params = mutable_params(job) | {"holder": owner, "now": now}
    rows = conn.execute(_UPDATE.format(lease=lease), params).fetchall()
    if not rows:
        if conn.execute("SELECT 1 FROM jobs WHERE id = ?", [job.id]).fetchone():
            raise LeaseLost(job.id)
        raise JobMissing(job.id)
    [(seq,)] = rows
    # the result is written once: check first rather than send a large body to be ignored
    if (
        job.result is not None
        and not conn.execute("SELECT 1 FROM results WHERE seq = ?", [seq]).fetchone()
    ):
        insert_result(conn, seq, job.result)


def _purge(conn: sqlite3.Connection, before: float, limit: int) -> int:
    sql = f"SELECT seq FROM jobs WHERE state IN ({_TERMINAL}) AND updated_at < ? LIMIT ?"
    seqs = [seq for (seq,) in conn.execute(sql, [before, limit]).fetchall()]
    if not seqs:
        return 0
    for table in ("jobs", "requests", "results"):
        # one statement per table: SQLite works through it without coming back to Python
        conn.execute(f"DELETE FROM {table} WHERE seq IN ({_marks(len(seqs))})", seqs)
    return len(seqs)


def _vacuum_step(conn: sqlite3.Connection) -> bool:
    """Give up to VACUUM_STEP free pages back; True while there may be more to give."""
    [before] = conn.execute("PRAGMA freelist_count").fetchone()
    if before == 0:
        return False
    # Python's sqlite3 steps a statement that returns no columns once, and one step of
    # incremental_vacuum frees one page: so one statement per page, in one transaction
    conn.execute("BEGIN IMMEDIATE")
    try:
        for _ in range(min(before, VACUUM_STEP)):
            conn.execute("PRAGMA incremental_vacuum")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    [after] = conn.execute("PRAGMA freelist_count").fetchone()
    return bool(0 < after < before)  # no progress: the file has no incremental vacuum
