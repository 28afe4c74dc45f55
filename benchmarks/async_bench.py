"""The async path end to end, and its memory: atkproxy on its SQLite store between a fast
upstream and a fast callback receiver (a measurement, not a test; everything on 127.0.0.1).

    python benchmarks/async_bench.py e2e [--duration 60] [--pyspy py-spy]
    python benchmarks/async_bench.py queued [--jobs 1000000]
    python benchmarks/async_bench.py big [--concurrent 16] [--size 10485760]

e2e     nginx answers every request with a fixed JSON body (`metadata.state` 2: the preset's
        status rule says Completed without a probe); benchmarks/peers.py counts callbacks.
        First wrk POSTs pass-through for --duration (req/s, proxy CPU per request), then wrk
        POSTs with X-ATK-Mode: async and X-ATK-Callback for --duration, and the run waits
        until every job the store holds has been delivered and the receiver has counted
        as many callbacks (accepted = received, duplicates counted). The async CPU window
        runs from wrk's start to the last callback: accept, upstream call, status, callback
        and every save of every job. Reports the ratios of issue 9's targets.
queued  fills a store file with --jobs accepted jobs (straight through the schema module),
        starts atkproxy on it with `async.max_inflight=1` and an upstream that never answers,
        adds more through HTTP, and reports RSS (the store is the queue).
big     --concurrent async jobs at once whose upstream answers --size bytes, delivered to
        the receiver; atkproxy's peak RSS (VmHWM) after each round.

Prints a Markdown report to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:0] = [str(ROOT), str(HERE)]

BODY = b'{"name":"Ada Lovelace","email":"ada@example.org","age":36,"approval":false}'
FIXED = '{"id":"1","metadata":{"state":2}}'
CLK = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 30.0


def say(*parts: object) -> None:
    print(f"[async-bench {time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


# -- processes -------------------------------------------------------------------------


class Procs:
    """Every process started here, stopped (TERM, then KILL) when the run ends."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pids: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *cmd: str, port: int | None = None) -> subprocess.Popen[bytes]:
        log = open(self.work / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.pids[name] = proc
        if port is not None:
            self.wait_port(name, port)
        return proc

    def wait_port(self, name: str, port: int) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return
            if self.pids[name].poll() is not None or time.monotonic() > deadline:
                tail = (self.work / f"{name}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(f"{name} is not listening on {port}:\n{tail}")
            time.sleep(0.05)

    def stop(self, name: str) -> None:
        proc = self.pids.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.pids)):
            self.stop(name)


@contextlib.contextmanager
def workdir(keep: bool) -> Iterator[tuple[Path, Procs]]:
    work = Path(tempfile.mkdtemp(prefix="atkasync."))
    procs = Procs(work)
    try:
        yield work, procs
    finally:
        procs.stop_all()
        if keep:
            say("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def thread_cpu(pid: int) -> collections.Counter[str]:
    """CPU seconds by thread name (the event loop, the store's writer, its checkpointer...)."""
    out: collections.Counter[str] = collections.Counter()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            # Python names no OS thread: the main one is the event loop; the others are the
            # store's writer and checkpointer threads and the resolver's, told apart by CPU
            name = "event loop" if task.name == str(pid) else f"thread {task.name}"
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            out[name] += (int(fields[11]) + int(fields[12])) / CLK
    return out


def mem_mib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port_base(base: int) -> int:
    for port in range(base, base + 6):
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            raise SystemExit(f"127.0.0.1:{port} is in use (give --port-base)")
    return base


def start_nginx(procs: Procs, work: Path, port: int) -> None:
    conf = work / "nginx.conf"
    conf.write_text(f"""worker_processes 1;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {work}/nginx-body;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{FIXED}';
        }}
    }}
}}
""")
    procs.start("nginx", "nginx", "-p", str(work), "-c", str(conf), "-e", str(work / "ne.log"),
                port=port)  # fmt: skip


def start_atkproxy(procs: Procs, db: Path, port: int, upstream: int, *defines: str) -> int:
    args = [
        sys.executable, "-m", "atkproxy", "serve",
        "--config", str(ROOT / "atkproxy/presets/automatiko.yaml"),
        "-D", "listen.host=127.0.0.1", "-D", f"listen.port={port}",
        "-D", f"upstream.url=http://127.0.0.1:{upstream}",
        "-D", f"store.url=sqlite:///{db}",
        "-D", "logging.level=warning", "-D", "logging.format=json",
        "-D", "callback.destinations.allow=[127.0.0.1/32]",
    ]  # fmt: skip
    for define in defines:
        args += ["-D", define]
    return procs.start("atkproxy", *args, port=port).pid


def wrk(url: str, seconds: int, connections: int, kind: str, callback: str = "") -> dict[str, Any]:
    env = {**os.environ, "BENCH_REQUEST": kind, "BENCH_CALLBACK": callback,
           "BENCH_COUNT_STATUS": "1"}  # fmt: skip
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
           "-s", str(HERE / "bench.lua"), url]  # fmt: skip
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return result
    raise SystemExit(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")


def http_get(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def store_counts(db: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return dict(conn.execute("SELECT state, n FROM state_counts").fetchall())


# -- py-spy ----------------------------------------------------------------------------


def start_pyspy(procs: Procs, pyspy: str, pid: int, seconds: int, out: Path) -> None:
    procs.start("pyspy", pyspy, "record", "--nonblocking", "-r", "200", "-f", "raw",
                "-d", str(seconds), "-o", str(out), "-p", str(pid))  # fmt: skip
    time.sleep(1.0)  # py-spy attaches before the load starts


def top_frames(folded: Path, top: int = 15) -> list[str]:
    """The busiest frames (py-spy's raw, collapsed stacks): by own time, over all threads and
    on the event loop's thread alone (stacks not rooted in a thread's bootstrap), by inclusive time
    among atkproxy's own frames on the event loop."""
    own: collections.Counter[str] = collections.Counter()
    loop_own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = loop_total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_short(f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        # the other threads (the store's writer, its checkpointer) start in threading.py;
        # the event loop's stacks start in __main__ or, for uvloop callbacks, anywhere
        if not frames[0].startswith("Thread._bootstrap ("):
            loop_total += n
            loop_own[frames[-1]] += n
            for frame in set(frames):
                incl[frame] += n
    pct = 100 / max(1, total)
    lines = [f"own time, all threads (top {top} of {total} samples):"]
    lines += [f"  {pct * n:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines.append(f"own time, event loop thread ({100 * loop_total / max(1, total):.0f}% of the "
                 f"samples; top {top}):")  # fmt: skip
    lines += [f"  {pct * n:5.1f}%  {f}" for f, n in loop_own.most_common(top)]
    lines.append("inclusive time, atkproxy's frames on the event loop (top 20):")
    entry = ("<module> (atkproxy/__main__.py)", "main (atkproxy/cli.py)", "serve (atkproxy/cli.py)")
    ours = [(f, n) for f, n in incl.most_common() if "(atkproxy/" in f and f not in entry][:20]
    lines += [f"  {pct * n:5.1f}%  {f}" for f, n in ours]
    return lines


def _short(frame: str) -> str:
    # "fn (path/to/module.py:123)" -> "fn (module.py)"; atkproxy's own keep their package path
    name, _, where = frame.partition(" (")
    path = where.split(":")[0]
    if "/atkproxy/" in path:
        path = "atkproxy/" + path.rsplit("/atkproxy/", 1)[1]
    else:
        path = "/".join(path.split("/")[-2:])
    return f"{name} ({path})"


# -- scenarios ---------------------------------------------------------------------------


def e2e(args: argparse.Namespace) -> list[str]:
    base = free_port_base(args.port_base)
    atk, upstream, receiver = base, base + 1, base + 2
    with workdir(args.keep) as (work, procs):
        db = work / "jobs.db"
        start_nginx(procs, work, upstream)
        procs.start("receiver", sys.executable, str(HERE / "peers.py"), "receiver",
                    "--port", str(receiver), port=receiver)  # fmt: skip
        pid = start_atkproxy(procs, db, atk, upstream, "async.max_queue=10000000",
                             *args.define)  # fmt: skip
        url = f"http://127.0.0.1:{atk}/registrations"
        callback = f"http://127.0.0.1:{receiver}/hook"
        say("warm-up")
        wrk(url, 2, args.connections, "post")
        wrk(url, 2, args.connections, "async", callback)
        drain(db, receiver, args.drain_timeout)
        say(f"pass-through: {args.duration}s")
        cpu0 = cpu_seconds(pid)
        passed = wrk(url, args.duration, args.connections, "post")
        pass_cpu = cpu_seconds(pid) - cpu0
        time.sleep(0.5)
        before_jobs = sum(store_counts(db).values())
        before_calls = int(http_get(receiver, "/count"))
        if args.pyspy:
            start_pyspy(procs, args.pyspy, pid, args.duration + args.profile_tail,
                        work / "async.folded")  # fmt: skip
        say(f"async with callbacks: {args.duration}s")
        t0, cpu0, threads0 = time.monotonic(), cpu_seconds(pid), thread_cpu(pid)
        sent = wrk(url, args.duration, args.connections, "async", callback)
        load_end = time.monotonic()
        at_load_end = int(http_get(receiver, "/count")) - before_calls
        jobs, calls, t1 = drain(db, receiver, args.drain_timeout)
        job_cpu = cpu_seconds(pid) - cpu0
        threads = thread_cpu(pid)
        threads.subtract(threads0)
        rss = (mem_mib(pid, "VmRSS"), mem_mib(pid, "VmHWM"))
        accepted, received = jobs - before_jobs, calls - before_calls
        profile = [
            "CPU by thread over the window, µs per job: "
            + ", ".join(
                f"{name} {1e6 * sec / max(1, calls - before_calls):,.0f}"
                for name, sec in threads.most_common()
                if sec > 0
            )
        ]
        if args.pyspy:
            procs.pids["pyspy"].wait(args.duration + args.profile_tail + 60)
            profile += top_frames(work / "async.folded")
    return e2e_report(args, passed, pass_cpu, sent, accepted, received,
                      (t1 - t0, load_end - t0, job_cpu), rss, profile, at_load_end)  # fmt: skip


def drain(db: Path, receiver: int, limit: float) -> tuple[int, int, float]:
    """Wait until no job has work left and the receiver counted a callback per job."""
    deadline = time.monotonic() + limit
    while True:
        counts = store_counts(db)
        busy = sum(counts.get(s, 0) for s in ("accepted", "running", "delivering"))
        jobs = sum(counts.values())
        calls = int(http_get(receiver, "/count"))
        if not busy and calls >= jobs:
            return jobs, calls, time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"not settled after {limit}s: {counts}, {calls} callbacks")
        time.sleep(0.05)


def e2e_report(
    args: argparse.Namespace,
    passed: dict[str, Any],
    pass_cpu: float,
    sent: dict[str, Any],
    accepted: int,
    received: int,
    times: tuple[float, float, float],
    rss: tuple[float, float],
    profile: list[str],
    at_load_end: int,
) -> list[str]:
    window, load, job_cpu = times
    pass_rps = passed["statuses"].get("200", 0) / passed["duration_s"]
    pass_us = 1e6 * pass_cpu / max(1, passed["requests"])
    job_us = 1e6 * job_cpu / max(1, received)
    e2e_rate = received / window
    answered = sent["statuses"].get("202", 0)
    lines = [
        f"e2e: wrk -t1 -c{args.connections}, {args.duration}s per phase; atkproxy on SQLite; "
        "nginx fixed-JSON upstream; benchmarks/peers.py receiver",
        "",
        "| | value |",
        "|---|--:|",
        f"| pass-through POST req/s (200s) | {pass_rps:,.0f} |",
        f"| pass-through proxy CPU per request, µs | {pass_us:,.1f} |",
        f"| pass-through p50 / p99 ms | {passed['p50_ms']:.2f} / {passed['p99_ms']:.2f} |",
        f"| async: 202s answered to wrk / other answers | {answered:,} / "
        f"{sum(n for s, n in sent['statuses'].items() if s != '202'):,} |",
        f"| async: 202s per second while wrk ran | {answered / sent['duration_s']:,.0f} |",
        f"| async: jobs accepted (in the store) / callbacks received | {accepted:,} / "
        f"{received:,} |",
        f"| async: wrk run + drain to the last callback, s | {load:.1f} + {window - load:.1f} |",
        f"| **e2e jobs/s** (callbacks / window) | **{e2e_rate:,.0f}** |",
        f"| callbacks/s while wrk ran / during the drain | {at_load_end / load:,.0f} / "
        f"{(received - at_load_end) / max(0.001, window - load):,.0f} |",
        f"| **proxy CPU per job**, µs (window CPU / jobs) | **{job_us:,.1f}** |",
        f"| proxy CPU use over the window (cores) | {job_cpu / window:.2f} |",
        f"| atkproxy RSS after / peak, MiB | {rss[0]:.1f} / {rss[1]:.1f} |",
        f"| ratio job CPU / pass-through CPU (target <= 3) | {job_us / pass_us:.2f} |",
        f"| ratio e2e jobs/s / pass-through req/s (target >= 0.5) | {e2e_rate / pass_rps:.2f} |",
        f"| accepted = received | {'yes' if accepted == received else 'NO'} |",
    ]
    lines += ["", profile[0]]
    if profile[1:]:
        lines += ["", "py-spy over the async phase (wrk run and drain):", "", "```", *profile[1:],
                  "```"]  # fmt: skip
    return lines


def queued(args: argparse.Namespace) -> list[str]:
    from store_scale import sample_job

    from atkproxy.jobs import new_job_id
    from atkproxy.store.sqlite_schema import connect, insert_job

    base = free_port_base(args.port_base)
    atk, upstream = base, base + 1
    lines = [f"queued: {args.jobs:,} accepted jobs filled into the store, then atkproxy started on "
             "it (async.max_inflight=1, an upstream that never answers)", ""]  # fmt: skip
    with workdir(args.keep) as (work, procs):
        db = work / "jobs.db"
        say(f"filling {args.jobs} jobs")
        conn = connect(db)
        start = time.time() - 3600
        ids = []
        for first in range(0, args.jobs, 10_000):
            conn.execute("BEGIN")
            for n in range(first, min(first + 10_000, args.jobs)):
                ids.append(new_job_id())
                insert_job(conn, sample_job(ids[-1], start + n * 0.001, args.body_size, False))
            conn.execute("COMMIT")
        conn.close()
        os.sync()  # the fill's writeback would otherwise slow the commits measured next
        procs.start("hold", sys.executable, str(HERE / "peers.py"), "hold", "--port",
                    str(upstream), port=upstream)  # fmt: skip
        pid = start_atkproxy(procs, db, atk, upstream, "async.max_inflight=1",
                             f"async.max_queue={args.jobs + 1_000_000}")  # fmt: skip
        time.sleep(3)  # the first claim and the first poll
        rows = [("started on the full store", mem_mib(pid, "VmRSS"), mem_mib(pid, "VmHWM"),
                 store_counts(db).get("accepted", 0))]  # fmt: skip
        lookups = status_lookups(atk, ids, 2000) if ids else "-"
        url = f"http://127.0.0.1:{atk}/registrations"
        for seconds in (5, 10):
            sent = wrk(url, seconds, 16, "async", "http://127.0.0.1:9/hook")
            time.sleep(1)
            rate = sent["statuses"].get("202", 0) / sent["duration_s"]
            rows.append((f"after {sent['statuses'].get('202', 0):,} more accepted over HTTP"
                         f" ({rate:,.0f} 202s/s, wrk -c16)",
                         mem_mib(pid, "VmRSS"), mem_mib(pid, "VmHWM"),
                         store_counts(db).get("accepted", 0)))  # fmt: skip
    lines += ["| when | RSS MiB | peak MiB | jobs queued (accepted) |", "|---|--:|--:|--:|"]
    lines += [f"| {w} | {r:.1f} | {p:.1f} | {q:,} |" for w, r, p, q in rows]
    lines += ["", f"GET /_atk/jobs/{{id}} of random filled jobs ({args.body_size}-byte request "
              f"bodies), one at a time, keep-alive: {lookups}"]  # fmt: skip
    return lines


def status_lookups(port: int, ids: list[str], count: int) -> str:
    """p50 / p99 / max of job status reads through the proxy's management API."""
    import http.client
    import random
    import statistics

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    took = []
    for job_id in random.sample(ids, count):
        began = time.perf_counter()
        conn.request("GET", f"/_atk/jobs/{job_id}")
        answer = conn.getresponse()
        answer.read()
        took.append((time.perf_counter() - began) * 1000)
        if answer.status != 200:
            raise SystemExit(f"status read answered {answer.status}")
    conn.close()
    q = statistics.quantiles(took, n=100)
    return f"p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, max {max(took):.2f} ms ({count} reads)"


def big(args: argparse.Namespace) -> list[str]:
    base = free_port_base(args.port_base)
    atk, upstream, receiver = base, base + 1, base + 2
    rows = []
    with workdir(args.keep) as (work, procs):
        db = work / "jobs.db"
        procs.start("big", sys.executable, str(HERE / "peers.py"), "big", "--port",
                    str(upstream), "--size", str(args.size), port=upstream)  # fmt: skip
        procs.start("receiver", sys.executable, str(HERE / "peers.py"), "receiver",
                    "--port", str(receiver), port=receiver)  # fmt: skip
        pid = start_atkproxy(procs, db, atk, upstream, f"async.max_result={args.size}",
                             f"async.max_inflight={args.concurrent}", *args.define)  # fmt: skip
        rows.append(("idle", mem_mib(pid, "VmRSS"), mem_mib(pid, "VmHWM")))
        for n in range(1, args.rounds + 1):
            asyncio.run(post_async(atk, receiver, args.concurrent))
            drain(db, receiver, 120)
            rows.append((f"after round {n} ({args.concurrent} jobs at once)",
                         mem_mib(pid, "VmRSS"), mem_mib(pid, "VmHWM")))  # fmt: skip
    lines = [f"big: {args.concurrent} async jobs at once, each answered {args.size:,} bytes by "
             "the upstream and delivered to the receiver", "",
             "| when | RSS MiB | peak (VmHWM) MiB |", "|---|--:|--:|"]  # fmt: skip
    lines += [f"| {w} | {r:.1f} | {p:.1f} |" for w, r, p in rows]
    return lines


async def post_async(port: int, receiver: int, count: int) -> None:
    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (f"POST /registrations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"X-ATK-Mode: async\r\nX-ATK-Callback: http://127.0.0.1:{receiver}/hook\r\n"
                f"Content-Length: {len(BODY)}\r\nConnection: close\r\n\r\n")  # fmt: skip
        writer.write(head.encode() + BODY)
        answer = await reader.read()
        writer.close()
        if not answer.startswith(b"HTTP/1.1 202"):
            raise SystemExit(f"expected a 202, got {answer[:200]!r}")

    await asyncio.gather(*(one() for _ in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=("e2e", "queued", "big"))
    parser.add_argument("--duration", type=int, default=60, help="e2e: seconds per phase")
    parser.add_argument("--connections", type=int, default=32, help="e2e: wrk -c")
    parser.add_argument("--pyspy", default="", help="e2e: a py-spy to sample the async phase")
    parser.add_argument("--profile-tail", type=int, default=5, help="e2e: py-spy's extra seconds")
    parser.add_argument("--drain-timeout", type=float, default=600.0)
    parser.add_argument("--jobs", type=int, default=1_000_000, help="queued: jobs to fill")
    parser.add_argument("--body-size", type=int, default=len(BODY), help="queued: request bytes")
    parser.add_argument("--concurrent", type=int, default=16, help="big: jobs at once")
    parser.add_argument("--size", type=int, default=10 * 1024 * 1024, help="big: answer bytes")
    parser.add_argument("--rounds", type=int, default=3, help="big: rounds")
    parser.add_argument("--port-base", type=int, default=27380)
    parser.add_argument("-D", "--define", action="append", default=[], help="atkproxy -D")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    scenario = {"e2e": e2e, "queued": queued, "big": big}[args.scenario]
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(
        f"Run {when} at commit {commit}, {os.cpu_count()} CPUs, "
        f"Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}"
    )
    print()
    print("\n".join(scenario(args)))


if __name__ == "__main__":
    main()
