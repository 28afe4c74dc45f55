"""The callback client alone: CPU per callback of atkproxy's client (receivers.py) against
aiohttp's ClientSession set up as atkproxy used it before (a measurement, not a test).

    python benchmarks/callback_bench.py [--count 20000] [--concurrency 32] [--rounds 3]

Both deliver the same job (a small JSON body, the X-ATK-* headers) through
`callback.Deliverer` to benchmarks/peers.py's receiver (its own process, on uvloop), with
`--concurrency` deliveries at once on uvloop; rounds alternate between the two clients.
Reports this process's CPU per callback (the receiver's is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from atkproxy.auth import NoAuth  # noqa: E402
from atkproxy.callback import Deliverer, callback_client  # noqa: E402
from atkproxy.destinations import Policy  # noqa: E402
from atkproxy.jobs import AtkStatus, Job, JobState, UpstreamRequest, UpstreamResult  # noqa: E402

BODY = b'{"id":"1","metadata":{"state":2},"name":"Ada Lovelace","email":"ada@example.org"}'


def job(url: str) -> Job:
    result = UpstreamResult(200, [("Content-Type", "application/json")], BODY)
    return Job(id="0192f0c4a1b27c3d8e9f", instance_id="1", callback_url=url, method="POST",
               path_qs="/orders", due_at=0.0, request=UpstreamRequest("POST", "/orders", [], b""),
               state=JobState.DELIVERING, result=result, status=AtkStatus.COMPLETED)  # fmt: skip


class SessionPoster:
    """aiohttp's ClientSession as callback.py set it up before (without its guard hooks)."""

    def __init__(self, timeout: float) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            skip_auto_headers=("Content-Type",),
        )

    async def post(self, url: Any, headers: Any, body: bytes) -> tuple[int, str | None]:
        async with self._session.post(url, headers=headers, data=body, allow_redirects=False) as r:
            return r.status, r.headers.get("Retry-After")

    async def close(self) -> None:
        await self._session.close()


async def deliver_all(deliverer: Deliverer, url: str, count: int, concurrency: int) -> float:
    """CPU seconds of this process for `count` deliveries."""
    the_job = job(url)
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            attempt = await deliverer.deliver(the_job, 1)
            assert attempt.status == 204, attempt

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - started


async def measure(args: argparse.Namespace, url: str) -> dict[str, list[float]]:
    policy = Policy.from_lists(["127.0.0.1/32"], [])
    clients: dict[str, Callable[[], Any]] = {
        "aiohttp ClientSession": lambda: SessionPoster(10.0),
        "atkproxy CallbackClient": lambda: callback_client(10.0, policy, None, args.concurrency),
    }
    seen: dict[str, list[float]] = {name: [] for name in clients}
    for _ in range(args.rounds):
        for name, make in clients.items():
            client = make()
            deliverer = Deliverer(client, NoAuth())
            await deliver_all(deliverer, url, 500, args.concurrency)  # warm: connections made
            cpu = await deliver_all(deliverer, url, args.count, args.concurrency)
            await client.close()
            seen[name].append(cpu / args.count * 1e6)
            print(f"{name}: {seen[name][-1]:.1f} µs per callback", file=sys.stderr)
    return seen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    peer = [sys.executable, str(ROOT / "benchmarks/peers.py"), "receiver", "--port", str(port)]
    receiver = subprocess.Popen(peer)
    try:
        deadline = time.monotonic() + 10
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            if time.monotonic() > deadline:
                raise SystemExit("the receiver did not start")
            time.sleep(0.05)
        seen = uvloop.run(measure(args, f"http://127.0.0.1:{port}/cb"))
    finally:
        receiver.terminate()
        receiver.wait()
    print(f"callback client CPU per callback, {args.count} callbacks x {args.rounds} rounds, "
          f"{args.concurrency} at once (min / median µs):\n")  # fmt: skip
    print("| client | min µs | median µs |\n|---|--:|--:|")
    for name, values in seen.items():
        ordered = sorted(values)
        print(f"| {name} | {ordered[0]:.1f} | {ordered[len(ordered) // 2]:.1f} |")


if __name__ == "__main__":
    main()
