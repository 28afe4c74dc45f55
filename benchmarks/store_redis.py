"""Job store throughput: the Redis store against a local redis-server, beside the memory store.

Two measures:

  add             jobs recorded per second by `--concurrency` callers at once (a 1 KiB
                  request body each), as accepts do
  claim+update    jobs per second taken by `--workers` workers that each claim up to 16
                  jobs, then hand each back finished with a result (a 1 KiB body), as the
                  engine does

The script starts its own redis-server in a temporary directory (AOF on, with the fsync
policies asked for), or uses `--url`, under a key prefix of its own that it deletes after.

    python -m benchmarks.store_redis [--jobs 5000] [--concurrency 64] [--workers 8]
                                     [--fsync always everysec] [--url redis://...]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from redis.asyncio import Redis

from atkproxy.jobs import Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.store import JobStore, open_store

BODY = b"x" * 1024
REQUEST = UpstreamRequest("POST", "/orders", [("Content-Type", "application/json")], BODY)
RESULT = UpstreamResult(200, [("Content-Type", "application/json")], BODY)
LEASE = 60.0
CLAIM_BATCH = 16


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(8).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server(fsync: str) -> Iterator[str]:
    directory = Path(tempfile.mkdtemp(prefix="atkproxy-bench-redis-"))
    port = _free_port()
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "yes", "--appendfsync", fsync, "--loglevel", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def new_job(n: int) -> Job:
    now = time.time()
    return Job(
        id=f"bench-{n}",
        instance_id=f"instance-{n}",
        method="POST",
        path_qs="/orders",
        request=REQUEST,
        callback_url=None,
        created_at=now,
        updated_at=now,
        due_at=now,
    )


async def add_rate(store: JobStore, jobs: int, concurrency: int) -> float:
    numbers = iter(range(jobs))

    async def caller() -> None:
        for n in numbers:
            await store.add(new_job(n))

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return jobs / (time.perf_counter() - started)


async def claim_update_rate(store: JobStore, jobs: int, workers: int) -> float:
    done = 0

    async def worker(name: str) -> None:
        nonlocal done
        while done < jobs:
            now = time.time()
            claimed = await store.claim(name, [JobState.ACCEPTED], now, now + LEASE, CLAIM_BATCH)
            if not claimed:
                await asyncio.sleep(0.001)  # the others hold the rest
                continue
            await asyncio.gather(*(store.update(finish(job), name) for job in claimed))
            done += len(claimed)

    started = time.perf_counter()
    await asyncio.gather(*(worker(f"worker-{n}") for n in range(workers)))
    return done / (time.perf_counter() - started)


def finish(job: Job) -> Job:
    finished = job.to(JobState.RUNNING).to(JobState.FINISHED).with_result(RESULT)
    return replace(finished.released(None), lease_owner=None)


async def measure(label: str, url: str, jobs: int, concurrency: int, workers: int) -> None:
    prefix = f"atkproxy-bench-{uuid.uuid4().hex[:8]}:"
    store = await open_store(url, redis_prefix=prefix)
    try:
        adds = await add_rate(store, jobs, concurrency)
        steps = await claim_update_rate(store, jobs, workers)
        left = (await store.counts())[JobState.ACCEPTED]
    finally:
        await store.close()
        if url.startswith("redis"):
            await _delete_prefix(url, prefix)
    print(f"{label:<24} {adds:>10.0f} {steps:>14.0f}   (left accepted: {left})")


async def _delete_prefix(url: str, prefix: str) -> None:
    client = Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=prefix + "*", count=1000):
            await client.unlink(key)
    finally:
        await client.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--fsync", nargs="+", default=["always", "everysec"])
    parser.add_argument("--url", help="an existing Redis instead of a temporary one")
    args = parser.parse_args()

    print(f"{args.jobs} jobs, {args.concurrency} adding at once, {args.workers} workers; jobs/s:")
    print(f"{'store':<24} {'add':>10} {'claim+update':>14}")
    await measure("memory", "memory://", args.jobs, args.concurrency, args.workers)
    if args.url:
        await measure("redis (given)", args.url, args.jobs, args.concurrency, args.workers)
        return
    for fsync in args.fsync:
        with redis_server(fsync) as url:
            await measure(
                f"redis appendfsync={fsync}", url, args.jobs, args.concurrency, args.workers
            )


if __name__ == "__main__":
    asyncio.run(main())
