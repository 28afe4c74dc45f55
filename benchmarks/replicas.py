"""Replicas on Redis beside SQLite: accept rate and end-to-end jobs per second, in one run.

For each case (store x replicas) it starts fresh proxies (`python -m atkproxy`, the
Automatiko preset) on their own ports in front of one backend (benchmarks/backend.py), with a
callback receiver of its own, and drives them with two wrk processes at once (one per replica
with two replicas, both at the one replica otherwise; `--connections` in all) sending async
starts with `X-ATK-Callback` for `--duration` seconds. Measured:

  accept rate    202s per second during the load (wrk: answers minus non-2xx)
  end to end     jobs per second from the start of the load until the receiver has had a
                 callback for every 202 (distinct X-ATK-Job): accepted / (load + drain)

Cases: `sqlite` (each replica its own file, as pods with their own volume: no shared truth),
and `redis` (one redis-server, AOF `appendfsync always`, shared by the replicas), with 1 and
2 replicas; `redis-everysec:N` runs Redis with `appendfsync everysec` instead.
`async.max_queue` is raised so that the accept rate is the store's, not shedding.

    python -m benchmarks.replicas [--duration 10] [--connections 32] [--cases sqlite:1 ...]

The Markdown report goes to stdout, progress to stderr. Needs wrk and redis-server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "atkproxy" / "presets" / "automatiko.yaml"
START_TIMEOUT = 20.0
DRAIN_TIMEOUT = 300.0
DEFAULT_CASES = ["sqlite:1", "sqlite:2", "redis:1", "redis:2"]


def log(message: str) -> None:
    print(f"[replicas {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start on {port}") from None
            time.sleep(0.05)


@contextmanager
def started(
    command: list[str], port: int, what: str, logfile: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with logfile.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, process, what)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(processes: list[subprocess.Popen[bytes]]) -> float:
    """utime + stime of the processes so far (/proc/PID/stat fields 14 and 15)."""
    ticks = 0
    for process in processes:
        fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# -- the callback receiver (its own process: it must not share the load generator's CPU) --


def receiver_app() -> web.Application:
    seen: set[str] = set()
    total = 0

    async def callback(request: web.Request) -> web.Response:
        nonlocal total
        await request.read()
        seen.add(request.headers.get("X-ATK-Job", ""))
        total += 1
        return web.Response()

    async def count(request: web.Request) -> web.Response:
        return web.json_response({"distinct": len(seen), "total": total})

    app = web.Application()
    app.router.add_post("/cb", callback)
    app.router.add_get("/count", count)
    return app


def receiver_counts(port: int) -> tuple[int, int]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=10) as r:
        counts = json.loads(r.read())
    return int(counts["distinct"]), int(counts["total"])


# -- one case ----------------------------------------------------------------------------


@dataclass
class Result:
    case: str
    accepted: int
    refused: int
    errors: int
    accept_rate: float
    during: float  # callbacks per second during the load
    drain: float  # seconds after the load until the last callback
    end_to_end: float
    duplicates: int
    proxy_cpu: float  # ms of the proxies' CPU per job, load and drain
    redis_cpu: float | None  # the same for redis-server


def proxy_command(port: int, backend: int, store: str) -> list[str]:
    defines = [
        "listen.host=127.0.0.1", f"listen.port={port}", f"upstream.url=http://127.0.0.1:{backend}",
        f"store.url={store}", "store.poll=100ms", "async.max_queue=1000000",
        "callback.destinations.allow=[127.0.0.1/32]", "logging.level=warning",
    ]  # fmt: skip
    args = [arg for define in defines for arg in ("-D", define)]
    return [sys.executable, "-m", "atkproxy", "serve", "--config", str(PRESET), *args]


def redis_command(port: int, directory: Path, fsync: str) -> list[str]:
    return [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--save", "", "--appendonly", "yes", "--appendfsync", fsync, "--loglevel", "warning",
    ]  # fmt: skip


WRK_ANSWERS = re.compile(r"(\d+) requests in")
WRK_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
WRK_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")


def wrk_counts(output: str) -> tuple[int, int, int]:
    """(answers, non-2xx answers, socket errors) from wrk's summary."""
    answers = WRK_ANSWERS.search(output)
    if answers is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    non_2xx = WRK_NON_2XX.search(output)
    errors = WRK_ERRORS.search(output)
    return (
        int(answers.group(1)),
        int(non_2xx.group(1)) if non_2xx else 0,
        sum(map(int, errors.groups())) if errors else 0,
    )


def drive(ports: list[int], callback: str, args: argparse.Namespace) -> tuple[int, int, int]:
    """Two wrk processes at once (one per replica, or both at the one)."""
    targets = [ports[n % len(ports)] for n in range(2)]
    env = {**os.environ, "BENCH_CALLBACK": callback}
    script = str(ROOT / "benchmarks" / "replicas.lua")
    each = max(1, args.connections // 2)
    wrk = ["wrk", "-t1", f"-c{each}", f"-d{args.duration}s", "-s", script]
    wrks = [
        subprocess.Popen(
            [*wrk, f"http://127.0.0.1:{port}/registrations"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for port in targets
    ]
    totals = [wrk_counts(w.communicate()[0]) for w in wrks]
    return tuple(sum(t[i] for t in totals) for i in range(3))  # type: ignore[return-value]


def wait_drained(receiver: int, before: int, accepted: int) -> tuple[int, int]:
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while True:
        distinct, total = receiver_counts(receiver)
        if distinct - before >= accepted or time.monotonic() > deadline:
            return distinct, total
        time.sleep(0.05)


def run_case(
    case: str, backend: int, receiver: int, work: Path, args: argparse.Namespace
) -> Result:
    kind, count = case.split(":")
    ports = [free_port() for _ in range(int(count))]
    directory = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    redis: list[subprocess.Popen[bytes]] = []
    with ExitStack() as stack:
        if kind.startswith("redis"):
            redis_port, fsync = free_port(), kind.partition("-")[2] or "always"
            redis.append(stack.enter_context(started(redis_command(redis_port, directory, fsync),
                         redis_port, "redis-server", directory / "redis.log")))  # fmt: skip
            stores = [f"redis://127.0.0.1:{redis_port}/0"] * len(ports)
        else:
            stores = [f"sqlite:///{directory / f'jobs-{n}.db'}" for n in range(len(ports))]
        proxies = [
            stack.enter_context(started(proxy_command(port, backend, store), port,
                                        f"atkproxy {n}", directory / f"proxy-{n}.log"))
            for n, (port, store) in enumerate(zip(ports, stores, strict=True))
        ]  # fmt: skip
        cpu = (cpu_seconds(proxies), cpu_seconds(redis))
        before, before_total = receiver_counts(receiver)
        log(f"{case}: load for {args.duration} s")
        started_at = time.monotonic()
        answers, non_2xx, errors = drive(ports, f"http://127.0.0.1:{receiver}/cb", args)
        load = time.monotonic() - started_at
        during = receiver_counts(receiver)[0] - before
        accepted = answers - non_2xx
        distinct, total = wait_drained(receiver, before, accepted)
        elapsed = time.monotonic() - started_at
        cpu = (cpu_seconds(proxies) - cpu[0], cpu_seconds(redis) - cpu[1])
        log(f"{case}: {accepted} accepted, drained {elapsed - load:.1f} s after the load")
    return Result(
        case, accepted, non_2xx, errors, accepted / load, during / load, elapsed - load,
        (distinct - before) / elapsed, (total - before_total) - (distinct - before),
        1000 * cpu[0] / max(1, accepted), 1000 * cpu[1] / max(1, accepted) if redis else None,
    )  # fmt: skip


# -- the report --------------------------------------------------------------------------


def describe(case: str) -> str:
    kind, count = case.split(":")
    fsync = kind.partition("-")[2] or "always"
    store = "SQLite, a file each" if kind == "sqlite" else f"Redis, shared (AOF {fsync})"
    return f"{store}, {count} replica{'s' if count != '1' else ''}"


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"Load: 2 wrk processes x -t1 -c{max(1, args.connections // 2)} -d{args.duration}s, "
        "async POST /registrations with a callback; backend benchmarks/backend.py (minimal).",
        "",
        "| case | 202s | 503s | socket errors | accept rate, 202/s | callbacks/s during the load "
        "| drain after the load, s | end to end, jobs/s | duplicate callbacks "
        "| proxies' CPU ms/job | redis-server CPU ms/job |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for r in results:
        redis = "-" if r.redis_cpu is None else f"{r.redis_cpu:.2f}"
        lines.append(
            f"| {describe(r.case)} | {r.accepted:,} | {r.refused:,} | {r.errors:,} "
            f"| {r.accept_rate:,.0f} | {r.during:,.0f} | {r.drain:.1f} | {r.end_to_end:,.0f} "
            f"| {r.duplicates} | {r.proxy_cpu:.2f} | {redis} |"
        )
    return "\n".join(lines)


def serve_receiver(port: int) -> None:
    web.run_app(receiver_app(), host="127.0.0.1", port=port, access_log=None, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cases", nargs="+", default=DEFAULT_CASES)
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.receiver:
        return serve_receiver(args.receiver)
    for tool in ("wrk", "redis-server"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found")
    work = Path(tempfile.mkdtemp(prefix="atkproxy-bench-replicas-"))
    backend, receiver = free_port(), free_port()
    backend_script = str(ROOT / "benchmarks" / "backend.py")
    backend_command = [sys.executable, backend_script, "--port", str(backend)]
    receiver_command = [sys.executable, "-m", "benchmarks.replicas", "--receiver", str(receiver)]
    try:
        with (
            started(backend_command, backend, "backend", work / "backend.log"),
            started(receiver_command, receiver, "receiver", work / "receiver.log"),
        ):
            results = [run_case(case, backend, receiver, work, args) for case in args.cases]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(report(results, args))


if __name__ == "__main__":
    main()
