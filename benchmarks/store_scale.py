"""How the SQLite job store's costs grow with the jobs it holds (a measurement, not a test).

    python benchmarks/store_scale.py                 # 1,000,000 jobs
    python benchmarks/store_scale.py --jobs 200000   # quicker

Fills a store file straight through the schema module (bulk transactions: filling through
`add` one job at a time would measure the filling), then measures, on an empty store and
on the full one: `get` latency (p50, p99), `add` rate (concurrent adds, group-committed),
and one call each of `claim`, `page`, `counts`, a purge batch and `compact`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atkproxy.jobs import (
    AtkStatus,
    Attempt,
    Job,
    JobState,
    UpstreamRequest,
    UpstreamResult,
    new_job_id,
)
from atkproxy.store.sqlite import SQLiteStore
from atkproxy.store.sqlite_schema import connect, insert_job

BACKLOG = 1000  # jobs still to run, among the N


def sample_job(job_id: str, created_at: float, body_size: int, done: bool) -> Job:
    headers = [("Content-Type", "application/json"), ("Authorization", "fernet:" + "x" * 100)]
    job = Job(
        id=job_id,
        instance_id=job_id,
        method="POST",
        path_qs="/orders",
        request=UpstreamRequest("POST", "/orders", headers, b"r" * body_size),
        callback_url="http://receiver.test/hook",
        route="orders",
        path_params={"id": "7"},
        created_at=created_at,
        updated_at=created_at,
        due_at=created_at,
        reply=b'{"id": "%s"}' % job_id.encode(),
    )
    if not done:
        return job
    result = UpstreamResult(200, [("Content-Type", "application/json")], b"a" * body_size)
    return replace(
        job.with_result(result),
        state=JobState.DELIVERED,
        status=AtkStatus.COMPLETED,
        attempts=(Attempt(created_at + 1, 200, None, 0.01),),
        due_at=None,
    )


def fill(path: Path, count: int, body_size: int) -> list[str]:
    conn = connect(path)
    ids = []
    start = time.time() - 86400.0
    try:
        for first in range(0, count, 10_000):
            conn.execute("BEGIN")
            for n in range(first, min(first + 10_000, count)):
                job_id = new_job_id()
                ids.append(job_id)
                done = n >= BACKLOG
                insert_job(conn, sample_job(job_id, start + n * 0.01, body_size, done))
            conn.execute("COMMIT")
    finally:
        conn.close()
    return ids


async def timed(coro: object) -> float:
    began = time.perf_counter()
    await coro  # type: ignore[misc]
    return (time.perf_counter() - began) * 1000


async def measure(path: Path, ids: list[str], body_size: int, samples: int) -> dict[str, str]:
    store = await SQLiteStore.open(f"sqlite:///{path}")
    try:
        return await _measure(store, ids, body_size, samples)
    finally:
        await store.close()


async def _measure(
    store: SQLiteStore, ids: list[str], body_size: int, samples: int
) -> dict[str, str]:
    out: dict[str, str] = {}
    if ids:
        lat = [await timed(store.get(random.choice(ids))) for _ in range(samples)]
        q = statistics.quantiles(lat, n=100)
        out["get p50/p99 ms"] = f"{q[49]:.3f} / {q[98]:.3f}"
    adds = [sample_job(new_job_id(), time.time(), body_size, False) for _ in range(samples)]
    began = time.perf_counter()
    for first in range(0, samples, 64):
        await asyncio.gather(*(store.add(job) for job in adds[first : first + 64]))
    out["add rate /s (64 at a time)"] = f"{samples / (time.perf_counter() - began):.0f}"
    lat = [
        await timed(store.add(sample_job(new_job_id(), time.time(), body_size, False)))
        for _ in range(200)
    ]
    out["add one at a time p50/p99 ms"] = (
        f"{statistics.median(lat):.3f} / {statistics.quantiles(lat, n=100)[98]:.3f}"
    )
    now = time.time()
    claim = store.claim("b", [JobState.ACCEPTED], now, now + 30, 32)
    out["claim 32 ms"] = f"{await timed(claim):.3f}"
    out["page(delivered, 100) ms"] = f"{await timed(store.page(JobState.DELIVERED, 100, None)):.3f}"
    out["counts ms"] = f"{await timed(store.counts()):.3f}"
    out["purge 256 ms"] = f"{await timed(store.purge(now, 256)):.3f}"
    out["compact ms"] = f"{await timed(store.compact()):.3f}"
    purged, lat = await adds_during_retention(store, body_size)
    out["purge 20000 + compact: jobs"] = str(purged)
    out["  add meanwhile p50/max ms"] = f"{statistics.median(lat):.3f} / {max(lat):.3f}"
    return out


async def adds_during_retention(store: SQLiteStore, body_size: int) -> tuple[int, list[float]]:
    """Accepts one at a time while a large purge and a compact run: what each waited."""

    async def retention() -> int:
        purged = await store.purge(time.time(), 20_000)
        await store.compact()
        return purged

    task = asyncio.create_task(retention())
    lat: list[float] = []
    while not task.done() or not lat:
        job = sample_job(new_job_id(), time.time(), body_size, False)
        lat.append(await timed(store.add(job)))
    return await task, lat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--body-size", type=int, default=512)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (a temp dir)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        where = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        empty = asyncio.run(measure(where / "empty.db", [], args.body_size, args.samples))
        began = time.perf_counter()
        ids = fill(where / "full.db", args.jobs, args.body_size)
        filled = time.perf_counter() - began
        os.sync()  # the fill's writeback would otherwise slow the fsyncs measured next
        full = asyncio.run(measure(where / "full.db", ids, args.body_size, args.samples))
        size = sum(p.stat().st_size for p in where.glob("full.db*")) / 1e6
    print(
        f"SQLite {sqlite3.sqlite_version}; {args.jobs} jobs ({BACKLOG} still to run),"
        f" {args.body_size}-byte bodies; filled in {filled:.0f} s, {size:.0f} MB"
    )
    print(f"{'':32} {'empty':>20} {'full':>20}")
    for name in full:
        print(f"{name:32} {empty.get(name, '-'):>20} {full[name]:>20}")


if __name__ == "__main__":
    main()
