"""Helpers for benchmarks/run.sh: read atkproxy's job store and turn the runs into a report.

    python benchmarks/report.py backlog JOBS_DB   jobs not yet settled (accepted/running/delivering)
    python benchmarks/report.py jobs JOBS_DB      jobs by state, ATK status and upstream status
    python benchmarks/report.py wait JOBS_DB SECS wait until the backlog is 0; print the seconds
    python benchmarks/report.py log ATK_LOG       what atkproxy logged, by kind, most frequent first
    python benchmarks/report.py table WORK_DIR    the Markdown report of a run

WORK_DIR holds runs/r<round>-<scenario>.txt (wrk's output, whose BENCH_JSON line bench.lua
printed, then the lines `CPU <process> <ticks>`, `WINDOW <seconds>`, `DRAIN <seconds>` that
run.sh appended) and meta.env (key=value facts about the run).
"""

from __future__ import annotations

import collections
import json
import re
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

UNSETTLED = ("accepted", "running", "delivering")

REQUESTS = {
    "get": "GET /hello",
    "post": "POST /registrations",
    "async": "POST /registrations, X-ATK-Mode: async",
}
VIAS = {
    "direct": "direct to the backend",
    "nginx": "nginx (1 worker, keep-alive pool)",
    "haproxy": "haproxy (1 thread, keep-alive)",
    "plain": "plainest aiohttp proxy (benchmarks/plain_proxy.py)",
    "atk": "atkproxy pass-through",
    "atkdef": "atkproxy pass-through, logging at its default",
    "atkbase": "atkproxy before (BENCH_ATK_BASELINE) pass-through",
    "floor": "aiohttp's low-level server answering by itself (benchmarks/floor_server.py)",
}
SCENARIOS = {
    f"{r}-{v}": (request, via) for r, request in REQUESTS.items() for v, via in VIAS.items()
}
SCENARIOS["async-atk"] = (REQUESTS["async"], "atkproxy async (202s)")
SCENARIOS["async-atkbase"] = (REQUESTS["async"], "atkproxy before, async (202s)")
PROXY_OF = {v: v for v in VIAS if v != "direct"} | {"atk": "atkproxy"}
# (label, scenario via, reference via): the ratios the report gives for each request kind
RATIO_PAIRS = [
    ("atkproxy / nginx", "atk", "nginx"),
    ("atkproxy / haproxy", "atk", "haproxy"),
    ("atkproxy / plain aiohttp proxy", "atk", "plain"),
    ("atkproxy / direct", "atk", "direct"),
    ("atkproxy logging at default / atkproxy", "atkdef", "atk"),
    ("atkproxy / atkproxy before", "atk", "atkbase"),
    ("atkproxy before / nginx", "atkbase", "nginx"),
    ("atkproxy before / haproxy", "atkbase", "haproxy"),
    ("atkproxy before / plain aiohttp proxy", "atkbase", "plain"),
    ("nginx / direct", "nginx", "direct"),
    ("aiohttp server alone / atkproxy", "floor", "atk"),
]


# -- the job store -------------------------------------------------------------------


def _connect(db: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)


def backlog(db: str) -> int:
    marks = ", ".join("?" * len(UNSETTLED))
    try:
        with _connect(db) as conn:
            row = conn.execute(f"SELECT count(*) FROM jobs WHERE state IN ({marks})", UNSETTLED)
            return int(row.fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # no store yet


def wait_settled(db: str, limit: float) -> tuple[float, int]:
    start = time.monotonic()
    while (left := backlog(db)) and time.monotonic() - start < limit:
        time.sleep(0.2)
    return time.monotonic() - start, left


def jobs(db: str) -> list[tuple[Any, ...]]:
    sql = """
        SELECT state, json_extract(record, '$.status'), json_extract(record, '$.result.status'),
               count(*)
        FROM jobs GROUP BY 1, 2, 3 ORDER BY 4 DESC
    """
    try:
        with _connect(db) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []


def log_summary(path: str, top: int = 12) -> list[str]:
    """structlog's JSON lines by level/event/status/reason; aiohttp's plain tracebacks by the
    lines that name the logger and the exception (the frames in between are left out)."""
    counts: collections.Counter[str] = collections.Counter()
    with open(path, errors="replace") as lines:
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                if line[:1].strip() and not line.startswith(("Traceback", "^")):
                    counts[line.strip()[:160]] += 1
                continue
            parts = (rec.get("level"), rec.get("event"), rec.get("status"), rec.get("reason"))
            counts[" ".join(str(p) for p in parts if p is not None)] += 1
    return [f"{n:8d}  {what}" for what, n in counts.most_common(top)]


# py-spy sees Python frames only: time in C (uvloop, the socket calls) is charged to the Python
# frame that called it, and callbacks run by uvloop appear without the frames that scheduled them.
PROFILE_KINDS = (
    ("upstream client (aiohttp ClientSession, or atkproxy's http1.py)",
     ("aiohttp/client.py", "aiohttp/client_reqrep.py", "aiohttp/client_proto.py",
      "aiohttp/connector.py", "Upstream.", "Streamed.chunks", "atkproxy/http1.py")),
    ("job store (record serialising, aiosqlite, sqlite3)", ("aiosqlite", "sqlite3", "/store/")),
    ("atkproxy header hygiene", ("upstream_headers", "hop_filtered", "atkproxy/headers.py")),
    ("downstream server (aiohttp web: parse, route, respond)",
     ("aiohttp/web_", "aiohttp/http_", "aiohttp/streams.py", "aiohttp/base_protocol.py")),
    ("other atkproxy code (handlers, accept, jobs, logging)", ("atkproxy/", "structlog")),
)  # fmt: skip


def profile_summary(path: Path) -> list[str]:
    """Shares of py-spy samples (raw/folded stacks) by the first kind a stack's frames match."""
    shares: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        kind = next((k for k, marks in PROFILE_KINDS if any(m in stack for m in marks)),
                    "event loop and the rest")  # fmt: skip
        shares[kind] += n
    if not total:
        return []
    return [f"{100 * n / total:5.1f}%  {kind}" for kind, n in shares.most_common()] + [
        f"({total} samples)"
    ]


def profile_top(path: Path, top: int = 15) -> list[str]:
    """The functions py-spy found running (the innermost Python frame), most samples first."""
    leaves: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        leaf = stack.rsplit(";", 1)[-1] or "(a thread with no Python frame)"
        leaves[re.sub(r"^(.*?) \((?:.*/)?([^/]+/[^/]+?):\d+\)$", r"\1 (\2)", leaf)] += int(count)
    if not total:
        return []
    return [f"{100 * n / total:5.1f}%  {leaf}" for leaf, n in leaves.most_common(top)]


# -- runs ---------------------------------------------------------------------------


def read_run(path: Path) -> dict[str, Any]:
    run: dict[str, Any] = {"cpu": {}, "file": path.name, "text": path.read_text()}
    for line in run["text"].splitlines():
        if line.startswith("BENCH_JSON "):
            run.update(json.loads(line.removeprefix("BENCH_JSON ")))
        elif line.startswith("CPU "):
            _, name, ticks = line.split()
            run["cpu"][name] = int(ticks)
        elif line.startswith("ATKLOG "):
            _, tracebacks, rejected = line.split()
            run["tracebacks"], run["rejected"] = int(tracebacks), int(rejected)
        elif line.startswith(("WINDOW ", "DRAIN ")):
            key, value = line.split()
            run[key.lower()] = float(value)
    return run


def read_meta(work: Path) -> dict[str, str]:
    meta = {}
    for line in (work / "meta.env").read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            meta[key] = value
    return meta


def load_runs(work: Path) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((work / "runs").glob("r*-*.txt")):
        match = re.fullmatch(r"r(\d+)-(.+)\.txt", path.name)
        assert match
        run = read_run(path)
        run["round"] = int(match.group(1))
        runs.setdefault(match.group(2), []).append(run)
    return runs


def ok_count(run: dict[str, Any]) -> int:
    return int(run.get("requests", 0)) - int(run.get("errors", {}).get("status", 0))


def errors(run: dict[str, Any]) -> int:
    e = run.get("errors", {})
    return sum(int(e.get(k, 0)) for k in ("connect", "read", "write", "timeout"))


def cpu_us_per_request(run: dict[str, Any], name: str, clk_tck: int) -> float | None:
    ticks = run["cpu"].get(name)
    done = ok_count(run)
    if ticks is None or done <= 0:
        return None
    return float(ticks) / clk_tck * 1e6 / done


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def proxy_name(scenario: str) -> str | None:
    return PROXY_OF.get(scenario.split("-", 1)[1])


def summary(runs: dict[str, list[dict[str, Any]]], clk: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for scenario, rounds in runs.items():
        proxy = proxy_name(scenario)
        out[scenario] = {
            "rps": median([r.get("rps") for r in rounds]),
            "ok_rps": median([ok_count(r) / r["duration_s"] for r in rounds if "duration_s" in r]),
            "p50": median([r.get("p50_ms") for r in rounds]),
            "p99": median([r.get("p99_ms") for r in rounds]),
            "each": [r.get("rps") for r in sorted(rounds, key=lambda r: r["round"])],
            "non2xx": sum(int(r.get("errors", {}).get("status", 0)) for r in rounds),
            "errors": sum(errors(r) for r in rounds),
            "tracebacks": sum(int(r.get("tracebacks", 0)) for r in rounds),
            "rejected": sum(int(r.get("rejected", 0)) for r in rounds),
            "statuses": _merge_statuses(rounds),
            "proxy_cpu": median([cpu_us_per_request(r, proxy, clk) for r in rounds])
            if proxy
            else None,
            "backend_cpu": median([cpu_us_per_request(r, "backend", clk) for r in rounds]),
            "drain": median([r.get("drain") for r in rounds]),
            "sustained": median([ok_count(r) / r["window"] for r in rounds if r.get("window")]),
            "ok": sum(ok_count(r) for r in rounds),
        }
    return out


def _merge_statuses(rounds: list[dict[str, Any]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for run in rounds:
        for status, n in run.get("statuses", {}).items():
            merged[status] = merged.get(status, 0) + n
    return merged


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def header(meta: dict[str, str]) -> str:
    keys = ("date", "nproc", "cpu_model", "kernel", "python", "aiohttp", "uvloop", "wrk", "nginx")
    m = {k: meta.get(k, "?") for k in (*keys, "store_fs")}
    return (
        f"Run {m['date']} at commit {meta.get('commit', '?')}: "
        f"{m['nproc']} CPUs ({m['cpu_model']}), Linux {m['kernel']}; "
        f"Python {m['python']}, aiohttp {m['aiohttp']}, uvloop {m['uvloop']}; wrk {m['wrk']}, "
        f"nginx {m['nginx']}, haproxy {meta.get('haproxy', '-')}; "
        f"atkproxy's SQLite store on {m['store_fs']}."
        + (f" atkproxy before (atkbase): commit {meta['baseline']}." if "baseline" in meta else "")
    )


def table(work: Path) -> str:
    meta = read_meta(work)
    clk = int(meta.get("clk_tck", "100"))
    runs = load_runs(work)
    s = summary(runs, clk)
    order = [name for name in SCENARIOS if name in s] + sorted(set(s) - set(SCENARIOS))
    lines = [
        header(meta),
        f"Load: {meta.get('settings', '?')}.",
        "",
        "| scenario | request | via | req/s | 2xx/s | req/s each round | p50 ms | p99 ms "
        "| non-2xx | socket errors | atkproxy tracebacks / rejections logged "
        "| proxy CPU µs/req | backend CPU µs/req |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name in order:
        row = s[name]
        request, via = SCENARIOS.get(name, (name, ""))
        each = " / ".join(fmt(v, 0) for v in row["each"])
        lines.append(
            f"| {name} | {request} | {via} | {fmt(row['rps'], 0)} | {fmt(row['ok_rps'], 0)} "
            f"| {each} | {fmt(row['p50'], 2)} | {fmt(row['p99'], 2)} | {row['non2xx']} "
            f"| {row['errors']} | {row['tracebacks']} / {row['rejected']} "
            f"| {fmt(row['proxy_cpu'])} | {fmt(row['backend_cpu'])} |"
        )
    lines += ["", *ratios(s), "", *async_notes(s, meta), "", *rss_lines(meta)]
    for profile in sorted(work.glob("profile-*.folded")):
        scenario = profile.stem.removeprefix("profile-")
        lines += ["", f"Where atkproxy's CPU went in {scenario} (py-spy samples, Python frames):",
                  "", "```", *profile_summary(profile), "```",
                  "", "Innermost Python frames (py-spy samples):",
                  "", "```", *profile_top(profile), "```"]  # fmt: skip
    logged = work / "atkproxy-log.txt"
    if logged.exists() and logged.read_text().strip():
        lines += ["", "What atkproxy logged over the whole run (warning and above; count, kind):",
                  "", "```", logged.read_text().rstrip(), "```"]  # fmt: skip
    statuses = {n: r["statuses"] for n, r in s.items() if r["statuses"]}
    if statuses:
        lines += ["", "Responses by status (BENCH_COUNT_STATUS=1): "
                  + "; ".join(f"{n}: {json.dumps(v)}" for n, v in statuses.items())]  # fmt: skip
    return "\n".join(lines) + "\n"


def ratios(s: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        "| ratio (medians) | req/s | p50 latency | p99 latency | proxy CPU per request |",
        "|---|--:|--:|--:|--:|",
    ]
    pairs = [
        (f"{kind.upper()} {label}", f"{kind}-{a}", f"{kind}-{b}")
        for kind in ("get", "post")
        for label, a, b in RATIO_PAIRS
    ]
    pairs.append(("POST async 202s / POST atkproxy pass-through", "async-atk", "post-atk"))
    for label, a, b in pairs:
        if a in s and b in s:
            x, y = s[a], s[b]
            # an async run's CPU includes the background work and any 503s: not comparable
            cpu = "-" if "async" in a else ratio(x["proxy_cpu"], y["proxy_cpu"])
            lines.append(
                f"| {label} | {ratio(x['ok_rps'], y['ok_rps'])} | {ratio(x['p50'], y['p50'])} "
                f"| {ratio(x['p99'], y['p99'])} | {cpu} |"
            )
    return lines if len(lines) > 2 else []


def async_notes(s: dict[str, dict[str, Any]], meta: dict[str, str]) -> list[str]:
    row = s.get("async-atk")
    if row is None:
        return []
    lines = [
        f"Async: {fmt(row['ok_rps'], 0)} 202s/s (median); after wrk stopped the background "
        f"backlog took {fmt(row['drain'], 1)} s (median) to settle, so the sustained rate of "
        f"accepted jobs carried through to the upstream was about "
        f"{fmt(row['sustained'], 0)} jobs/s (202s / (wrk run + drain)). "
        f"atkproxy CPU per accepted job, background work included: "
        f"{fmt(row['proxy_cpu'])} µs (CPU of the wrk run and the drain, over the 202s).",
    ]
    if meta.get("jobs"):
        lines += ["", "Jobs in the store at the end (state, ATK status, upstream status, count): "
                  + meta["jobs"]]  # fmt: skip
    return lines


def rss_lines(meta: dict[str, str]) -> list[str]:
    keys = [k for k in meta if k.startswith("rss_")]
    if not keys:
        return []
    lines = ["| process | RSS at idle (after start) | RSS after the load | peak RSS (VmHWM) |",
             "|---|--:|--:|--:|"]  # fmt: skip
    for proc in ("atkproxy", "atkdef", "atkbase", "plain", "floor", "backend", "nginx", "haproxy"):
        if f"rss_idle_{proc}" in meta:
            lines.append(
                f"| {proc} | {meta[f'rss_idle_{proc}']} | {meta.get(f'rss_after_{proc}', '-')} "
                f"| {meta.get(f'hwm_after_{proc}', '-')} |"
            )
    return lines


def main(argv: list[str]) -> int:
    usage = {"backlog": 2, "jobs": 2, "log": 2, "table": 2, "wait": 3}
    if not argv or usage.get(argv[0]) != len(argv):
        print(__doc__, file=sys.stderr)
        return 2
    command, arg = argv[:2]
    if command == "wait":
        seconds, left = wait_settled(arg, float(argv[2]))
        print(f"{seconds:.2f}")
        return 1 if left else 0
    if command == "log":
        print("\n".join(log_summary(arg)))
        return 0
    if command == "backlog":
        print(backlog(arg))
    elif command == "jobs":
        print("; ".join(f"{state}/{status}/{up}: {n}" for state, status, up, n in jobs(arg)))
    else:
        sys.stdout.write(table(Path(arg)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
