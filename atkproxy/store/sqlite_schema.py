"""The SQLite store's file: its schema, how a job maps to rows, and opening (and upgrading) it.

    jobs      small columns only: everything a status read, a claim or a list needs
    requests  the request (headers, body) and the 202 reply, written once when accepted
    results   the upstream's answer (headers, body), written once when there is one
    meta      small key/value rows; `ping` writes one
    state_counts  how many jobs are in each state, kept by triggers

Bodies live in tables of their own, keyed by the job's `seq`, because SQLite rewrites a
whole row on every UPDATE: the small columns change 3-4 times in a job's life, its bodies
never. `seq` is an explicit INTEGER PRIMARY KEY so VACUUM keeps it.

Schema versions (PRAGMA user_version):
    0  a new file, or one of the first store (which set no version; call it 1):
       `jobs(id, state, created_at, updated_at, record)`, the whole job as JSON with its
       bodies in base64; upgraded at open, in one transaction
    2  this layout
    3+ a newer atkproxy's: refused

New files use `auto_vacuum = INCREMENTAL`, so `compact` can give purged space back. A file
made without it (an upgraded one) is converted with a VACUUM at open when it is small; a
large one is left alone with a warning: run `VACUUM` once while the proxy is stopped:
    sqlite3 jobs.db 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from ..jobs import (
    TERMINAL,
    AtkStatus,
    Attempt,
    Headers,
    Job,
    JobState,
    UpstreamRequest,
    UpstreamResult,
)

log = structlog.get_logger("atkproxy.store")

SCHEMA_VERSION = 2
MIN_SQLITE = (3, 35, 0)  # UPDATE ... RETURNING
CACHE_KIB = 32 * 1024
VACUUM_AT_OPEN_MAX = 64 * 1024 * 1024  # a file this small is converted to incremental vacuum
WRITE_INTO_ROW_MIN = 64 * 1024  # a body this large is written into its row, not bound

SCHEMA = [
    """CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        instance_id TEXT NOT NULL,
        method TEXT NOT NULL,
        path_qs TEXT NOT NULL,
        callback_url TEXT,
        route TEXT,
        replay_safe INTEGER NOT NULL,
        path_params TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        status TEXT,
        reason TEXT,
        upstream_status INTEGER,
        upstream_error TEXT,
        attempts TEXT NOT NULL,
        delivery_base INTEGER NOT NULL,
        tries INTEGER NOT NULL,
        due_at REAL,
        lease_owner TEXT,
        lease_until REAL NOT NULL,
        idempotency TEXT UNIQUE,
        fingerprint TEXT,
        owner TEXT,
        trace TEXT
    )""",
    # claim: a range scan per state over the jobs that still have work (terminal jobs
    # have no due_at, so the index holds only the backlog)
    "CREATE INDEX jobs_due ON jobs (state, due_at) WHERE due_at IS NOT NULL",
    # page, newest first, of any state or of one
    "CREATE INDEX jobs_newest ON jobs (created_at, id)",
    "CREATE INDEX jobs_state_newest ON jobs (state, created_at, id)",
    # purge, and counts (the smallest index that has the state)
    "CREATE INDEX jobs_state_updated ON jobs (state, updated_at)",
    """CREATE TABLE requests (
        seq INTEGER PRIMARY KEY,
        method TEXT,
        path_qs TEXT,
        headers TEXT,
        body BLOB,
        reply BLOB
    )""",
    """CREATE TABLE results (
        seq INTEGER PRIMARY KEY,
        status INTEGER NOT NULL,
        headers TEXT NOT NULL,
        body BLOB NOT NULL,
        error TEXT,
        not_sent INTEGER NOT NULL
    )""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    # counts by state, kept by triggers: counting a million rows at each metrics scrape
    # would hold the store's thread (and the accepts behind it) for tens of milliseconds
    "CREATE TABLE state_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    *(f"INSERT INTO state_counts VALUES ('{state.value}', 0)" for state in JobState),
    """CREATE TRIGGER jobs_counted_in AFTER INSERT ON jobs BEGIN
        UPDATE state_counts SET n = n + 1 WHERE state = new.state;
    END""",
    """CREATE TRIGGER jobs_counted_out AFTER DELETE ON jobs BEGIN
        UPDATE state_counts SET n = n - 1 WHERE state = old.state;
    END""",
    """CREATE TRIGGER jobs_counted_moved AFTER UPDATE OF state ON jobs
    WHEN old.state IS NOT new.state BEGIN
        UPDATE state_counts SET n = n - 1 WHERE state = old.state;
        UPDATE state_counts SET n = n + 1 WHERE state = new.state;
    END""",
]

SMALL = (
    "id",
    "instance_id",
    "method",
    "path_qs",
    "callback_url",
    "route",
    "replay_safe",
    "path_params",
    "state",
    "created_at",
    "updated_at",
    "status",
    "reason",
    "upstream_status",
    "upstream_error",
    "attempts",
    "delivery_base",
    "tries",
    "due_at",
    "lease_owner",
    "lease_until",
    "idempotency",
    "fingerprint",
    "owner",
    "trace",
)
SMALL_COLUMNS = ", ".join(SMALL)
# What a step may change (Job.to, with_result, leased, released, attempts); the rest is
# written once by the insert. An UPDATE rewrites every index on a column it SETs, whether
# the value changed or not: leaving out id, created_at, idempotency... spares the UNIQUE
# indexes and jobs_newest on every save.
MUTABLE = (
    "state",
    "updated_at",
    "status",
    "reason",
    "upstream_status",
    "upstream_error",
    "attempts",
    "delivery_base",
    "tries",
    "due_at",
    "lease_owner",
    "lease_until",
)

_INSERT_JOB = f"INSERT INTO jobs ({SMALL_COLUMNS}) VALUES ({', '.join(':' + c for c in SMALL)})"
_INSERT_REQUEST = (
    "INSERT INTO requests (seq, method, path_qs, headers, body, reply) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_RESULT = (
    "INSERT INTO results (seq, status, headers, body, error, not_sent) VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_REQUEST_ZEROED = (
    "INSERT INTO requests (seq, method, path_qs, headers, body, reply)"
    " VALUES (?, ?, ?, ?, zeroblob(?), {reply})"
)
_INSERT_RESULT_ZEROED = (
    "INSERT INTO results (seq, status, headers, body, error, not_sent)"
    " VALUES (?, ?, ?, zeroblob(?), ?, ?)"
)
_BODIES = """
    SELECT r.seq, r.method, r.path_qs, r.headers, r.body, r.reply,
           s.status, s.headers, s.body, s.error, s.not_sent
    FROM requests r LEFT JOIN results s ON s.seq = r.seq WHERE r.seq IN ({marks})
"""
_PING = (
    "INSERT INTO meta (key, value) VALUES ('ping', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)


# -- jobs <-> rows -----------------------------------------------------------------------


def encode_headers(headers: Headers) -> str:
    # stdlib json with ensure_ascii: a lone surrogate (aiohttp's stand-in for a header byte
    # that is not UTF-8) becomes a \udcXX escape and comes back as it was
    return json.dumps([[name, value] for name, value in headers])


def decode_headers(text: str) -> Headers:
    return [(name, value) for name, value in json.loads(text)]


def small_params(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "instance_id": job.instance_id,
        "method": job.method,
        "path_qs": job.path_qs,
        "callback_url": job.callback_url,
        "route": job.route,
        "replay_safe": int(job.replay_safe),
        "path_params": json.dumps(job.path_params),
        "state": job.state.value,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "status": None if job.status is None else job.status.value,
        "reason": job.reason,
        "upstream_status": job.upstream_status,
        "upstream_error": job.upstream_error,
        "attempts": _attempts(job),
        "delivery_base": job.delivery_base,
        "tries": job.tries,
        "due_at": job.due_at,
        "lease_owner": job.lease_owner,
        "lease_until": job.lease_until,
        "idempotency": job.idempotency,
        "fingerprint": job.fingerprint,
        "owner": job.owner,
        "trace": job.trace,
    }


def mutable_params(job: Job) -> dict[str, Any]:
    """The MUTABLE columns of the job (and its id, which the UPDATE looks it up by)."""
    return {
        "id": job.id,
        "state": job.state.value,
        "updated_at": job.updated_at,
        "status": None if job.status is None else job.status.value,
        "reason": job.reason,
        "upstream_status": job.upstream_status,
        "upstream_error": job.upstream_error,
        "attempts": _attempts(job),
        "delivery_base": job.delivery_base,
        "tries": job.tries,
        "due_at": job.due_at,
        "lease_owner": job.lease_owner,
        "lease_until": job.lease_until,
    }


def _attempts(job: Job) -> str:
    return json.dumps([[a.at, a.status, a.error, a.duration, a.retry_after] for a in job.attempts])


class UnreadableRow(sqlite3.DatabaseError):
    """A stored job whose columns do not decode (edited by hand, or a bug): a store
    error like any other, so callers answer 503 rather than crash."""


def job_from_row(row: tuple[Any, ...] | sqlite3.Row) -> Job:
    """A job without bodies from the SMALL columns, in their order."""
    c = dict(zip(SMALL, row, strict=True))
    try:
        return Job(
            **c
            | {
                "replay_safe": bool(c["replay_safe"]),
                "path_params": json.loads(c["path_params"]),
                "state": JobState(c["state"]),
                "status": None if c["status"] is None else AtkStatus(c["status"]),
                "attempts": tuple(Attempt(*a) for a in json.loads(c["attempts"])),
            }
        )
    except (ValueError, TypeError) as exc:  # JSONDecodeError and bad enums are ValueErrors
        raise UnreadableRow(f"job {c['id']}: unreadable row: {exc}") from exc


def insert_job(conn: sqlite3.Connection, job: Job) -> int:
    """Insert the job and its bodies; returns its seq. sqlite3.IntegrityError on a known id."""
    seq = conn.execute(_INSERT_JOB, small_params(job)).lastrowid
    assert seq is not None
    insert_request(conn, seq, job.request, job.reply)
    if job.result is not None:
        insert_result(conn, seq, job.result)
    return seq


# A bound blob is copied by sqlite3, and the INSERT builds its record around a second copy:
# two more copies of a large body, on top of the one the job holds. A zeroblob costs
# nothing while the columns after it hold no bytes (NULL, 0, 1, or zeroblobs themselves),
# and the bytes then go from the job's buffer straight into the row's pages.


def insert_request(
    conn: sqlite3.Connection, seq: int, req: UpstreamRequest | None, reply: bytes | None
) -> None:
    if req is None:
        conn.execute(_INSERT_REQUEST, [seq, None, None, None, None, reply])
        return
    head = [seq, req.method, req.path_qs, encode_headers(req.headers)]
    if max(len(req.body), len(reply or b"")) < WRITE_INTO_ROW_MIN:
        conn.execute(_INSERT_REQUEST, [*head, req.body, reply])
        return
    if reply is None:  # NULL, not an empty blob
        conn.execute(_INSERT_REQUEST_ZEROED.format(reply="NULL"), [*head, len(req.body)])
    else:
        conn.execute(
            _INSERT_REQUEST_ZEROED.format(reply="zeroblob(?)"), [*head, len(req.body), len(reply)]
        )
    _write_into_row(conn, "requests", seq, {"body": req.body, "reply": reply or b""})


def insert_result(conn: sqlite3.Connection, seq: int, result: UpstreamResult) -> None:
    body = result.body
    headers = encode_headers(result.headers)
    # the error's text would follow the body in the record, and a failed result is small
    if len(body) < WRITE_INTO_ROW_MIN or result.error is not None:
        conn.execute(
            _INSERT_RESULT,
            [seq, result.status, headers, body, result.error, int(result.not_sent)],
        )
        return
    not_sent = int(result.not_sent)
    conn.execute(_INSERT_RESULT_ZEROED, [seq, result.status, headers, len(body), None, not_sent])
    _write_into_row(conn, "results", seq, {"body": body})


def _write_into_row(
    conn: sqlite3.Connection, table: str, seq: int, blobs: dict[str, bytes]
) -> None:
    """Fill the zeroblobs of row `seq` of `table`, column by column."""
    for column, data in blobs.items():
        if data:
            with conn.blobopen(table, column, seq) as blob:
                blob.write(data)


Bodies = tuple[UpstreamRequest | None, bytes | None, UpstreamResult | None]


def load_bodies(conn: sqlite3.Connection, seqs: list[int]) -> dict[int, Bodies]:
    """Request, reply and result of the jobs `seqs`, by seq."""
    if not seqs:
        return {}
    rows = conn.execute(_BODIES.format(marks=", ".join("?" * len(seqs))), seqs).fetchall()
    return {row[0]: _bodies(row) for row in rows}


def _bodies(row: tuple[Any, ...]) -> Bodies:
    _, method, path_qs, req_headers, req_body, reply, status, headers, body, error, not_sent = row
    request = (
        None
        if method is None
        else UpstreamRequest(method, path_qs, decode_headers(req_headers), req_body)
    )
    result = (
        None
        if status is None
        else UpstreamResult(status, decode_headers(headers), body, error, bool(not_sent))
    )
    return request, reply, result


def ping(conn: sqlite3.Connection) -> None:
    conn.execute(_PING, [time.time()])


# -- opening the file ----------------------------------------------------------------------


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating, upgrading) the store file; raises when it cannot take a write."""
    _create_private(path)
    # isolation_level=None: no implicit transactions, the store says BEGIN and COMMIT itself
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _setup(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(path: Path) -> None:
    """Make the directories (0700) and the file (0600) that do not exist yet, whatever the umask."""
    for directory in reversed(path.parents):
        if directory.exists():
            continue
        with contextlib.suppress(FileExistsError):
            directory.mkdir(mode=0o700)
            os.chmod(directory, 0o700)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)


def _setup(conn: sqlite3.Connection, path: Path) -> None:
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a file with no tables
    [mode] = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise sqlite3.OperationalError(f"cannot use WAL mode (journal_mode is {mode})")
    conn.execute("PRAGMA synchronous = FULL")
    # the indexes of a million jobs are tens of MiB: SQLite's default cache is 2 MiB
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    with _transaction(conn):
        _upgrade(conn)
        ping(conn)  # a real write: a read-only file or directory fails here, at start
    _ensure_incremental_vacuum(conn, path)


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _upgrade(conn: sqlite3.Connection) -> None:
    [version] = conn.execute("PRAGMA user_version").fetchone()
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"schema version {version} is newer than this atkproxy knows ({SCHEMA_VERSION})"
        )
    old = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'jobs'")
    if old.fetchone() is not None:
        _migrate_v1(conn)
    else:
        for statement in SCHEMA:
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _migrate_v1(conn: sqlite3.Connection) -> None:
    """Jobs of the first store (one JSON record each) into the new tables: unfinished
    jobs are due now and unleased, so the engine carries on with them at once."""
    conn.execute("ALTER TABLE jobs RENAME TO jobs_v1")
    conn.execute("DROP INDEX IF EXISTS jobs_state_created")
    for statement in SCHEMA:
        conn.execute(statement)
    now = time.time()
    rows = conn.execute("SELECT id, record FROM jobs_v1 ORDER BY created_at, rowid")
    count = 0
    for job_id, record in rows:
        try:
            job = job_from_v1(json.loads(record), now)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise sqlite3.DatabaseError(f"job {job_id}: cannot read its record: {exc!r}") from exc
        insert_job(conn, job)
        count += 1
    conn.execute("DROP TABLE jobs_v1")
    log.info("store upgraded", schema=SCHEMA_VERSION, jobs=count)


def job_from_v1(rec: dict[str, Any], now: float) -> Job:
    """A job from the first store's JSON record (bodies in base64)."""
    req, res = rec["request"], rec["result"]
    state = JobState(rec["state"])
    result = (
        None
        if res is None
        else UpstreamResult(
            res["status"], _v1_headers(res["headers"]), base64.b64decode(res["body"]), res["error"]
        )
    )
    return Job(
        id=rec["id"],
        instance_id=rec["instance_id"],
        method=req["method"],
        path_qs=req["path_qs"],
        request=UpstreamRequest(
            req["method"],
            req["path_qs"],
            _v1_headers(req["headers"]),
            base64.b64decode(req["body"]),
        ),
        callback_url=rec["callback_url"],
        route=rec["route"],
        replay_safe=bool(rec["replay_safe"]),
        path_params=dict(rec["path_params"]),
        state=state,
        created_at=rec["created_at"],
        updated_at=rec["updated_at"],
        result=result,
        upstream_status=None if result is None else result.status,
        upstream_error=None if result is None else result.error,
        status=None if rec["status"] is None else AtkStatus(rec["status"]),
        reason=rec["reason"],
        attempts=tuple(Attempt(*a) for a in rec["attempts"]),
        due_at=None if state in TERMINAL else now,
    )


def _v1_headers(raw: list[list[str]]) -> Headers:
    return [(name, value) for name, value in raw]


def _ensure_incremental_vacuum(conn: sqlite3.Connection, path: Path) -> None:
    [mode] = conn.execute("PRAGMA auto_vacuum").fetchone()
    if mode == 2:  # INCREMENTAL
        return
    if path.stat().st_size > VACUUM_AT_OPEN_MAX:
        log.warning(
            "store file without incremental vacuum: purged space is not given back until"
            " a one-time VACUUM (see atkproxy/store/sqlite_schema.py)",
            path=str(path),
        )
        return
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")
