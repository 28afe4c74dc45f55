"""What only the SQLite store promises: durability, its file, its upgrade path, its costs."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ctypes
import json
import os
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import structlog

from atkproxy.jobs import AtkStatus, Attempt, Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.store import StoreUnavailable, open_store, sqlite_schema
from atkproxy.store.sqlite import SQLiteStore, db_path
from atkproxy.store.sqlite_schema import SCHEMA_VERSION

from .test_store import FULL_JOB, NOW, RESULT, finished, make_job

REPO = Path(__file__).resolve().parents[2]


def raw(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Ask the file through a connection of its own, as another process would."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "jobs.db"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SQLiteStore]:
    opened = await SQLiteStore.open(f"sqlite:///{path}")
    yield opened
    await opened.close()


async def traced(store: SQLiteStore, step: Callable[[], Awaitable[None]]) -> list[str]:
    """The SQL statements `step` makes the store run."""
    seen: list[str] = []
    await store.trace(seen.append)
    try:
        await step()
    finally:
        await store.trace(None)
    return seen


# -- durability --------------------------------------------------------------------------


async def test_add_is_committed_before_it_returns(store: SQLiteStore, path: Path) -> None:
    await store.add(FULL_JOB)

    assert raw(path, "SELECT id FROM jobs") == [(FULL_JOB.id,)]


async def test_a_job_survives_a_reopen_with_its_bodies_in_wal_mode(path: Path) -> None:
    url = f"sqlite:///{path}"
    first = await open_store(url)
    await first.add(FULL_JOB)
    await first.close()

    reopened = await open_store(url)
    try:
        assert await reopened.get(FULL_JOB.id) == FULL_JOB.light()
        [claimed] = await reopened.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
        assert (claimed.request, claimed.reply) == (FULL_JOB.request, FULL_JOB.reply)
    finally:
        await reopened.close()
    assert raw(path, "PRAGMA journal_mode") == [("wal",)]
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]


async def test_concurrent_writes_share_commits_and_a_duplicate_fails_alone(
    store: SQLiteStore, path: Path
) -> None:
    jobs = [make_job(f"job-{n}") for n in range(50)]

    async def add_all() -> None:
        outcomes = await asyncio.gather(
            *(store.add(job) for job in jobs), store.add(jobs[7]), return_exceptions=True
        )
        assert outcomes[:50] == jobs
        assert isinstance(outcomes[50], KeyError)

    statements = await traced(store, add_all)

    assert raw(path, "SELECT count(*) FROM jobs") == [(50,)]
    commits = statements.count("COMMIT")
    assert 1 <= commits <= 3, f"{commits} commits for 51 writes: no group commit"


async def test_writes_that_all_succeed_share_a_transaction_without_savepoints(
    store: SQLiteStore,
) -> None:
    jobs = [make_job(f"job-{n}") for n in range(20)]

    async def add_all() -> None:
        await asyncio.gather(*(store.add(job) for job in jobs))

    statements = await traced(store, add_all)

    assert not [s for s in statements if s.startswith(("SAVEPOINT", "RELEASE", "ROLLBACK"))]
    assert 1 <= statements.count("COMMIT") <= 3


async def test_a_lost_lease_in_a_batch_fails_alone_and_the_rest_is_committed(
    store: SQLiteStore,
) -> None:
    await store.add(make_job("held"))
    [held] = await store.claim("w1", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    others = [make_job(f"job-{n}") for n in range(5)]

    outcomes = await asyncio.gather(
        *(store.add(job) for job in others[:2]),
        store.update(held.to(JobState.RUNNING), "w2"),  # not its holder
        *(store.add(job) for job in others[2:]),
        return_exceptions=True,
    )

    assert [type(o).__name__ for o in outcomes] == ["Job", "Job", "LeaseLost", "Job", "Job", "Job"]
    assert [await store.get(job.id) is not None for job in others] == [True] * 5
    assert (await store.get("held")).state is JobState.ACCEPTED  # type: ignore[union-attr]


async def test_a_cancelled_writer_leaves_its_write_and_the_others_alone(
    store: SQLiteStore,
) -> None:
    jobs = [make_job(f"job-{n}") for n in range(3)]
    writes = [asyncio.create_task(store.add(job)) for job in jobs]
    await asyncio.sleep(0)  # each has queued its write
    writes[1].cancel()

    async with asyncio.timeout(5):
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        await store.add(make_job("later"))  # the commits go on

    assert outcomes[0] == jobs[0] and outcomes[2] == jobs[2]
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert [await store.get(job.id) is not None for job in jobs] == [True] * 3  # still made


async def test_a_job_that_breaks_another_constraint_is_not_called_a_duplicate(
    store: SQLiteStore,
) -> None:
    broken = replace(make_job("a"), instance_id=None)  # type: ignore[arg-type]

    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        await store.add(broken)
    await store.add(make_job("b"))  # the failure was that write's alone


async def set_max_pages(store: SQLiteStore, pages: int | None) -> int:
    """Cap the file at `pages` (None: its size now), as a full disk would; returns the cap.
    White box: the cap is a setting of the store's own connection."""
    conn = store._conn

    def cap() -> int:
        limit = pages or conn.execute("PRAGMA page_count").fetchone()[0]
        return int(conn.execute(f"PRAGMA max_page_count = {limit}").fetchone()[0])

    return await store._run(cap)


async def test_a_full_store_refuses_writes_then_heals_without_a_reopen(
    store: SQLiteStore,
) -> None:
    await store.add(make_job("before"))
    big = replace(make_job("big"), reply=b"x" * 1_000_000)
    await set_max_pages(store, None)

    with pytest.raises(sqlite3.OperationalError, match="full"):
        await store.add(big)
    assert await store.get("big") is None

    await set_max_pages(store, 1 << 30)
    assert await store.add(big) == big
    await store.ping()
    assert (await store.counts())[JobState.ACCEPTED] == 2


async def test_an_unreadable_row_is_a_store_error_and_a_claim_sets_it_aside(
    store: SQLiteStore, path: Path
) -> None:
    await store.add(make_job("broken", due_at=1.0))
    await store.add(make_job("fine", due_at=2.0))
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE jobs SET attempts = 'not json' WHERE id = 'broken'")

    with pytest.raises(sqlite3.DatabaseError, match="job broken: unreadable row"):
        await store.get("broken")
    claimed = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10)

    assert [job.id for job in claimed] == ["fine"]
    [(state, due_at, owner, reason)] = raw(
        path, "SELECT state, due_at, lease_owner, reason FROM jobs WHERE id = 'broken'"
    )
    assert (state, due_at, owner) == ("dead", None, None)
    assert "unreadable row" in str(reason)


async def test_pages_walk_every_job_once_and_the_last_says_so(store: SQLiteStore) -> None:
    for n in range(6):  # two full pages: the second must say it is the last
        await store.add(make_job(f"j{n}", created_at=1000.0 + n // 2))  # pairs share a time
    seen: list[list[str]] = []
    cursor = None

    while True:
        jobs, cursor = await store.page(None, 3, cursor)
        seen.append([job.id for job in jobs])
        if cursor is None:
            break

    assert seen == [["j5", "j4", "j3"], ["j2", "j1", "j0"]]


async def test_one_claim_hands_jobs_out_earliest_due_first_whatever_the_order_added(
    store: SQLiteStore,
) -> None:
    for n, due in enumerate([5.0, 3.0, 4.0, 1.0, 2.0]):
        await store.add(make_job(f"j{n}", due_at=due))

    claimed = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10)

    assert [job.due_at for job in claimed] == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_each_result_is_kept_with_its_own_job(store: SQLiteStore) -> None:
    for job_id in ("first", "second"):
        await store.add(make_job(job_id))
    claimed = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 2)
    second = next(job for job in claimed if job.id == "second")

    await store.update(second.with_result(RESULT), "me")

    assert (await store.result("first"), await store.result("second")) == (None, RESULT)


async def test_a_save_sets_only_what_a_step_can_change(store: SQLiteStore) -> None:
    # an UPDATE rewrites the index of every column it SETs: the id, created_at and
    # idempotency indexes must not be rewritten at each of a job's saves
    await store.add(make_job("a"))
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)

    async def save() -> None:
        await store.update(claimed.to(JobState.RUNNING), "me")

    update = next(sql for sql in await traced(store, save) if sql.startswith("UPDATE jobs"))
    sets = update.split(" SET ")[1].split(" WHERE ")[0]
    assigned = {part.split("=")[0].strip() for part in sets.split(", ")}
    assert {"id", "created_at", "idempotency", "instance_id", "path_params"}.isdisjoint(assigned)
    assert {"state", "due_at", "lease_owner", "attempts"} <= assigned
    stored = await store.get("a")
    assert stored is not None and stored.state is JobState.RUNNING


async def test_a_purge_larger_than_a_batch_stops_at_its_limit(store: SQLiteStore) -> None:
    for start in range(0, 250, 50):
        await asyncio.gather(
            *(
                store.add(make_job(f"old-{n}", JobState.DEAD, updated_at=1.0, due_at=None))
                for n in range(start, start + 50)
            )
        )

    assert await store.purge(NOW, 150) == 150
    assert (await store.counts())[JobState.DEAD] == 100


async def test_a_write_queued_behind_a_failing_batch_is_still_committed(
    store: SQLiteStore,
) -> None:
    big = replace(make_job("big"), reply=b"x" * 1_000_000)
    await set_max_pages(store, None)
    started, release = threading.Event(), threading.Event()

    def hold_the_first_transaction(sql: str) -> None:
        if sql.startswith("BEGIN") and not started.is_set():
            started.set()
            release.wait(10)

    await store.trace(hold_the_first_transaction)
    failing = asyncio.create_task(store.add(big))
    await asyncio.to_thread(started.wait, 10)
    queued = asyncio.create_task(store.add(make_job("small")))  # waits for the next batch
    await asyncio.sleep(0)
    release.set()

    with pytest.raises(sqlite3.OperationalError, match="full"):
        await failing
    assert (await asyncio.wait_for(queued, 10)).id == "small"  # fits in the pages there are


# -- status reads never load bodies ----------------------------------------------------


async def test_a_status_read_of_a_job_with_a_10_mib_result_does_not_load_it(
    store: SQLiteStore,
) -> None:
    big = replace(RESULT, body=os.urandom(10 * 1024 * 1024))
    await store.add(FULL_JOB)
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    await store.update(replace(finished(claimed), result=big), "me")

    async def status_reads() -> None:
        assert (await store.get(FULL_JOB.id)).upstream_status == 200  # type: ignore[union-attr]
        assert [job.id for job in (await store.page(None, 10, None))[0]] == [FULL_JOB.id]

    statements = await traced(store, status_reads)

    assert statements, "the reads ran no SQL"
    for sql in statements:
        assert "results" not in sql and "requests" not in sql and "body" not in sql, sql
    assert await store.result(FULL_JOB.id) == big


# -- large results are written into their row, not bound ---------------------------------

ROW_MIN = sqlite_schema.WRITE_INTO_ROW_MIN


@pytest.mark.parametrize(
    ("size", "not_sent", "error"),
    [
        (ROW_MIN - 1, False, None),
        (ROW_MIN, False, None),
        (ROW_MIN, True, None),
        (3 * 1024 * 1024 + 5, False, None),
        (ROW_MIN + 1, False, "upstream unavailable: connection closed"),
        (ROW_MIN + 1, True, "upstream not reached"),
    ],
)
async def test_a_result_of_any_size_reads_back_byte_exact(
    store: SQLiteStore, size: int, not_sent: bool, error: str | None
) -> None:
    result = UpstreamResult(201, RESULT.headers, os.urandom(size), error, not_sent)
    await store.add(FULL_JOB)
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)

    await store.update(claimed.to(JobState.RUNNING).with_result(result).released(NOW), "me")

    assert await store.result(FULL_JOB.id) == result
    [again] = await store.claim("other", [JobState.RUNNING], NOW, NOW + 30, 1)
    assert again.result == result


@pytest.mark.parametrize(
    ("body_size", "reply_size"),
    [
        (ROW_MIN - 1, None),
        (ROW_MIN, None),
        (ROW_MIN, 20),
        (20, ROW_MIN),
        (0, ROW_MIN + 3),
        (3 * 1024 * 1024 + 5, 3 * 1024 * 1024 + 9),
    ],
)
async def test_a_request_and_its_reply_of_any_size_read_back_byte_exact(
    store: SQLiteStore, body_size: int, reply_size: int | None
) -> None:
    assert FULL_JOB.request is not None
    request = replace(FULL_JOB.request, body=os.urandom(body_size))
    reply = None if reply_size is None else os.urandom(reply_size)

    await store.add(replace(FULL_JOB, request=request, reply=reply))

    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    assert (claimed.request, claimed.reply) == (request, reply)


def sqlite_memory() -> tuple[Callable[[], int], Callable[[], int]] | None:
    """SQLite's own counters: bytes in use, and the most in use since the last call."""
    import _sqlite3

    try:
        lib = ctypes.CDLL(_sqlite3.__file__)
        used, highwater = lib.sqlite3_memory_used, lib.sqlite3_memory_highwater
    except (OSError, AttributeError):
        return None
    used.restype = highwater.restype = ctypes.c_int64
    highwater.argtypes = [ctypes.c_int]
    return used, lambda: int(highwater(1))


async def test_a_large_result_is_not_copied_by_sqlite(store: SQLiteStore) -> None:
    counters = sqlite_memory()
    if counters is None:
        pytest.skip("this Python's sqlite3 does not export SQLite's memory counters")
    used, highwater = counters
    size = 8 * 1024 * 1024
    big = replace(RESULT, body=os.urandom(size))
    await store.add(FULL_JOB)
    [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
    before = used()
    highwater()

    await store.update(replace(finished(claimed), result=big), "me")

    # the pages the body lands in are the page cache's (it holds up to CACHE_KIB); a
    # bound blob would add sqlite3's copy and the record built around a second one
    grew = highwater() - before
    assert grew < 1.5 * size, f"SQLite used {grew / size:.2f}x the body to store it"
    assert await store.result(FULL_JOB.id) == big


async def test_a_large_request_and_reply_are_not_copied_by_sqlite(store: SQLiteStore) -> None:
    counters = sqlite_memory()
    if counters is None:
        pytest.skip("this Python's sqlite3 does not export SQLite's memory counters")
    used, highwater = counters
    assert FULL_JOB.request is not None
    size = 4 * 1024 * 1024
    request = replace(FULL_JOB.request, body=os.urandom(size))
    job = replace(FULL_JOB, request=request, reply=os.urandom(size))
    before = used()
    highwater()

    await store.add(job)

    grew = highwater() - before
    assert grew < 1.5 * 2 * size, f"SQLite used {grew / (2 * size):.2f}x the bodies to store them"


# -- the schedule's queries are index range scans ------------------------------------------


def plan(path: Path, sql: str) -> str:
    return " | ".join(str(row[3]) for row in raw(path, f"EXPLAIN QUERY PLAN {sql}"))


async def test_claim_page_purge_use_indexes_not_scans_or_sorts(
    store: SQLiteStore, path: Path
) -> None:
    await store.add(make_job("a"))
    await store.add(make_job("old", JobState.DEAD, updated_at=1.0, due_at=None))

    async def work() -> None:
        await store.claim("me", [JobState.ACCEPTED, JobState.RUNNING], NOW, NOW + 30, 5)
        await store.page(JobState.ACCEPTED, 10, None)
        await store.page(None, 10, f"{NOW!r}_zzz")
        await store.page(JobState.DEAD, 10, f"{NOW!r}_zzz")
        await store.purge(NOW, 10)

    queries = [
        sql
        for sql in await traced(store, work)
        if sql.lstrip().startswith(("SELECT", "UPDATE", "DELETE"))
    ]
    assert len(queries) >= 6
    for sql in queries:
        shown = plan(path, sql)
        assert "SCAN" not in shown and "TEMP B-TREE" not in shown, f"{sql}\n-> {shown}"


# -- retention gives the space back ------------------------------------------------------


def file_size(path: Path, wal: bool = True) -> int:
    """The store's size on disk: its file and (unless `wal` is False) its WAL."""
    log = path.with_name(path.name + "-wal")
    return path.stat().st_size + (log.stat().st_size if wal and log.exists() else 0)


async def test_purge_then_compact_shrinks_the_file(store: SQLiteStore, path: Path) -> None:
    body = b"x" * 8192
    for start in range(0, 2000, 200):
        await asyncio.gather(
            *(
                store.add(
                    replace(
                        make_job(f"old-{n}", JobState.DEAD, updated_at=1.0, due_at=None),
                        result=replace(RESULT, body=body),
                    )
                )
                for n in range(start, start + 200)
            )
        )
    await store.add(make_job("kept"))
    full = file_size(path)

    assert await store.purge(NOW, 5000) == 2000
    await store.compact()

    assert file_size(path) < full / 4, (full, file_size(path))
    assert (await store.get("kept")) is not None
    assert raw(path, "SELECT count(*) FROM requests") == [(1,)]
    assert raw(path, "SELECT count(*) FROM results") == [(0,)]


async def test_the_wal_is_copied_back_while_the_store_runs(store: SQLiteStore, path: Path) -> None:
    # a few hundred pages: fewer than SQLite's own checkpoint in a commit waits for
    empty = file_size(path, wal=False)
    for n in range(70):
        await store.add(replace(make_job(f"job-{n}"), reply=b"r" * 4096))

    await store.settled()

    assert file_size(path, wal=False) > empty + 70 * 4096


async def test_counts_follow_every_write(store: SQLiteStore, path: Path) -> None:
    for n in range(6):
        await store.add(make_job(f"job-{n}"))
    await store.add(make_job("old", JobState.DEAD, updated_at=1.0, due_at=None))
    claimed = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 3)
    for job in claimed[:2]:
        await store.update(finished(job), "me")
    await store.update(claimed[2].to(JobState.RUNNING), "me")
    await store.update(replace(finished(claimed[0]), state=JobState.DEAD).released(None), "me")
    await store.redeliver(NOW, job_id=claimed[0].id)
    await store.purge(NOW, 10)

    truth = {row[0]: row[1] for row in raw(path, "SELECT state, count(*) FROM jobs GROUP BY state")}
    assert truth == {"accepted": 3, "running": 1, "delivering": 2}
    assert {s: n for s, n in (await store.counts()).items() if n} == truth


def transactions(statements: list[str]) -> list[list[str]]:
    """The traced statements grouped by transaction (BEGIN ... COMMIT)."""
    grouped: list[list[str]] = []
    for sql in statements:
        if sql.startswith("BEGIN"):
            grouped.append([])
        elif grouped:
            grouped[-1].append(sql)
    return grouped


async def test_purge_batches_are_committed_apart_from_accepts(store: SQLiteStore) -> None:
    for start in range(0, 500, 100):
        await asyncio.gather(
            *(
                store.add(make_job(f"old-{n}", JobState.DEAD, updated_at=1.0, due_at=None))
                for n in range(start, start + 100)
            )
        )

    async def purge_while_accepting() -> None:
        purged, *_ = await asyncio.gather(
            store.purge(NOW, 1000), *(store.add(make_job(f"new-{n}")) for n in range(20))
        )
        assert purged == 500

    grouped = transactions(await traced(store, purge_while_accepting))

    purges = [t for t in grouped if any(sql.startswith("DELETE FROM jobs") for sql in t)]
    assert len(purges) == 5  # 100 jobs a transaction
    for purge in purges:
        assert not any(sql.startswith("INSERT INTO jobs") for sql in purge)


async def test_ping_writes_a_row(store: SQLiteStore, path: Path) -> None:
    [(before,)] = raw(path, "SELECT value FROM meta WHERE key = 'ping'")

    await store.ping()

    [(after,)] = raw(path, "SELECT value FROM meta WHERE key = 'ping'")
    assert after > before  # type: ignore[operator]


# -- the file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///jobs.db", Path("jobs.db")),
        ("sqlite:///var/atk/jobs.db", Path("var/atk/jobs.db")),
        ("sqlite:////var/atk/jobs.db", Path("/var/atk/jobs.db")),
    ],
)
def test_url_names_a_relative_or_absolute_file(url: str, expected: Path) -> None:
    assert db_path(url) == expected


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite://host/jobs.db", "jobs.db"])
def test_url_without_a_file_is_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite:///"):
        db_path(url)


async def test_a_new_file_and_its_directories_are_private_whatever_the_umask(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a" / "b" / "jobs.db"
    wal = path.with_name("jobs.db-wal")
    old = os.umask(0)
    try:
        store = await open_store(f"sqlite:///{path}")
        await store.add(make_job("a"))
        wal_mode = stat.S_IMODE(wal.stat().st_mode)  # SQLite gives it the file's mode
    finally:
        os.umask(old)
    await store.close()

    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (path, path.parent, path.parent.parent)}
    assert modes == {path: 0o600, path.parent: 0o700, path.parent.parent: 0o700}
    assert wal_mode == 0o600


async def test_a_file_of_garbage_is_refused_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    path.write_bytes(os.urandom(64 * 1024))

    with pytest.raises(StoreUnavailable) as refused:
        await open_store(f"sqlite:///{path}")

    assert "\n" not in str(refused.value)
    assert "not a database" in str(refused.value)


async def test_an_sqlite_without_update_returning_is_refused(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))

    with pytest.raises(StoreUnavailable, match=r"3\.35 or newer"):
        await open_store(f"sqlite:///{path}")


async def test_a_file_of_a_newer_schema_is_refused(path: Path) -> None:
    await (await open_store(f"sqlite:///{path}")).close()
    raw(path, "PRAGMA user_version = 99")

    with pytest.raises(StoreUnavailable, match="schema version 99"):
        await open_store(f"sqlite:///{path}")


# -- read-only files and directories, for real ------------------------------------------

OPEN = """
import asyncio, sys
from atkproxy.store import StoreUnavailable, open_store

async def main() -> None:
    try:
        store = await open_store(sys.argv[1])
    except StoreUnavailable as exc:
        print("refused:", exc)
        return
    await store.close()
    print("opened")

asyncio.run(main())
"""


def _without_dac_override() -> None:
    # root ignores file modes through CAP_DAC_OVERRIDE: take it (and the search twin) out of
    # the bounding set, so the child, after exec, runs as root without them
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def open_in_child(path: Path) -> str:
    """Open the store in a process that file modes bind, even when the tests run as root."""
    result = subprocess.run(
        [sys.executable, "-c", OPEN, f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=_without_dac_override if os.geteuid() == 0 else None,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def lock_up(path: Path, lock: str) -> None:
    if lock == "directory-without-file":
        path.unlink()
    if lock == "file":
        path.chmod(0o444)
    else:
        path.parent.chmod(0o555)


def unlock(path: Path) -> None:
    path.parent.chmod(0o700)
    # SQLite gives the -wal and -shm files it made the mode of the database file
    for made in path.parent.iterdir():
        made.chmod(0o600)


@pytest.mark.parametrize("lock", ["file", "directory", "directory-without-file"])
async def test_a_read_only_store_is_refused_at_start_with_one_line(path: Path, lock: str) -> None:
    await (await open_store(f"sqlite:///{path}")).close()
    lock_up(path, lock)
    try:
        outcome = await asyncio.to_thread(open_in_child, path)
    finally:
        unlock(path)

    assert outcome.startswith(f"refused: store.url: cannot open sqlite:///{path}: "), outcome
    assert "\n" not in outcome
    # the control: the same file, writable again, opens in the same kind of process
    assert await asyncio.to_thread(open_in_child, path) == "opened"


# -- upgrade from the first schema ---------------------------------------------------------

V1_SQL = """
PRAGMA journal_mode = WAL;
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    created_at REAL,
    updated_at REAL,
    record TEXT NOT NULL
);
CREATE INDEX jobs_state_created ON jobs (state, created_at);
"""


def v1_record(
    job_id: str, state: str, result: dict[str, object] | None, reason: str | None = None
) -> dict[str, object]:
    """A job as the first store's `to_record` wrote it."""
    return {
        "id": job_id,
        "instance_id": f"instance-{job_id}",
        "request": {
            "method": "POST",
            "path_qs": "/orders?x=1",
            "headers": [["Content-Type", "application/json"], ["X-Raw", "caf\udce9"]],
            "body": base64.b64encode(b"\x00\xffbody").decode(),
        },
        "callback_url": "http://cb.test/hook",
        "route": "orders",
        "replay_safe": True,
        "path_params": {"id": "7"},
        "state": state,
        "created_at": 100.0,
        "updated_at": 200.0,
        "result": result,
        "status": None if result is None else "Completed",
        "reason": reason,
        "attempts": [] if result is None else [[201.0, 200, None, 0.5]],
    }


V1_RESULT = {
    "status": 201,
    "headers": [["Set-Cookie", "a=1"], ["Set-Cookie", "b=2"]],
    "body": base64.b64encode(b"\xc3\x28 answer").decode(),
    "error": None,
}


def write_v1(path: Path, records: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(V1_SQL)
        with db:
            db.executemany(
                "INSERT INTO jobs (id, state, created_at, updated_at, record)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (r["id"], r["state"], r["created_at"], r["updated_at"], json.dumps(r))
                    for r in records
                ],
            )


V1_REFUSED = {"status": 0, "headers": [], "body": "", "error": "ClientConnectorError: refused"}


def v1_expected(job_id: str, state: JobState, due_at: float | None, **changes: Any) -> Job:
    """What `v1_record(job_id, ...)` must read as after the upgrade (without bodies)."""
    return Job(
        id=job_id,
        instance_id=f"instance-{job_id}",
        method="POST",
        path_qs="/orders?x=1",
        callback_url="http://cb.test/hook",
        route="orders",
        replay_safe=True,
        path_params={"id": "7"},
        state=state,
        created_at=100.0,
        updated_at=200.0,
        due_at=due_at,
        **changes,
    )


async def test_a_file_of_the_first_schema_is_upgraded_at_open(path: Path) -> None:
    write_v1(
        path,
        [
            v1_record("pending", "accepted", None),
            v1_record("done", "delivered", V1_RESULT),
            v1_record("failed", "dead", V1_REFUSED, reason="receiver said 410"),
        ],
    )
    before = time.time()

    store = await open_store(f"sqlite:///{path}")
    try:
        pending, done, failed = [await store.get(i) for i in ("pending", "done", "failed")]
        [claimed] = await store.claim("me", [JobState.ACCEPTED], time.time(), NOW, 10)
        answers = [await store.result(i) for i in ("pending", "done", "failed")]
    finally:
        await store.close()

    assert pending is not None and before <= (pending.due_at or 0) <= time.time()
    assert pending == v1_expected("pending", JobState.ACCEPTED, pending.due_at)
    attempts = (Attempt(201.0, 200, None, 0.5),)
    assert done == v1_expected(
        "done",
        JobState.DELIVERED,
        None,
        upstream_status=201,
        status=AtkStatus.COMPLETED,
        attempts=attempts,
    )
    assert failed == v1_expected(
        "failed",
        JobState.DEAD,
        None,
        upstream_status=0,
        upstream_error="ClientConnectorError: refused",
        status=AtkStatus.COMPLETED,
        reason="receiver said 410",
        attempts=attempts,
    )
    assert claimed.request == UpstreamRequest(
        "POST",
        "/orders?x=1",
        [("Content-Type", "application/json"), ("X-Raw", "caf\udce9")],
        b"\x00\xffbody",
    )
    cookies = [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert answers == [
        None,
        UpstreamResult(201, cookies, b"\xc3\x28 answer"),
        UpstreamResult(0, [], b"", "ClientConnectorError: refused"),
    ]
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert raw(path, "PRAGMA auto_vacuum") == [(2,)]  # small: converted at open
    assert raw(path, "SELECT name FROM sqlite_master WHERE name LIKE 'jobs_v1%'") == []


async def test_a_large_upgraded_file_is_left_without_incremental_vacuum_and_says_so(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_schema, "VACUUM_AT_OPEN_MAX", 0)  # every file is "large"
    write_v1(path, [v1_record(f"done-{n}", "delivered", V1_RESULT) for n in range(50)])

    with structlog.testing.capture_logs() as logs:
        store = await open_store(f"sqlite:///{path}")
    try:
        assert await store.purge(time.time(), 100) == 50
        await store.compact()  # returns: no progress is the end, not a loop
    finally:
        await store.close()

    assert raw(path, "PRAGMA auto_vacuum") == [(0,)]
    assert any("VACUUM" in entry["event"] for entry in logs), logs


async def test_an_unreadable_record_stops_the_upgrade_and_changes_nothing(path: Path) -> None:
    write_v1(path, [v1_record("good", "accepted", None)])
    raw_insert = "INSERT INTO jobs VALUES ('bad', 'accepted', 1, 1, '{\"id\": \"bad\"}')"
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(raw_insert)

    with pytest.raises(StoreUnavailable, match="job bad") as refused:
        await open_store(f"sqlite:///{path}")

    assert "\n" not in str(refused.value)
    assert raw(path, "SELECT id FROM jobs ORDER BY id") == [("bad",), ("good",)]
    assert raw(path, "PRAGMA user_version") == [(0,)]
