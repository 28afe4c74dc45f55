"""SIGTERM to a real process: readiness 503 at once, still serving, stopped within the bound."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import aiohttp

from .conftest import ServerFactory, start_app
from .processes import atkproxy, free_port, json_lines, wait_healthy
from .support import ASYNC, Echo

DELAY, DRAIN = 1.0, 1.0


async def wait_status(session: aiohttp.ClientSession, url: str, status: int) -> float:
    """Seconds until `url` answers `status` (polled; fails after 2 s)."""
    start = time.monotonic()
    while True:
        async with session.get(url) as r:
            if r.status == status:
                return time.monotonic() - start
        assert time.monotonic() - start < 2, f"{url} never answered {status}"
        await asyncio.sleep(0.01)


async def test_sigterm_turns_readiness_503_and_stops_within_delay_plus_drain(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    echo = Echo()
    upstream, port = await start_app(aiohttp_server, echo.app), free_port()
    process = await atkproxy(
        *("-D", f"listen.port={port}", "-D", "listen.host=127.0.0.1"),
        *("-D", f"upstream.url={upstream}", "-D", f"store.url=sqlite:///{tmp_path / 'j.db'}"),
        *("-D", f"listen.shutdown_delay={DELAY}", "-D", f"async.drain_timeout={DRAIN}"),
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, f"{base}/_atk/ready")
        async with session.post(f"{base}/hold/job", json={}, headers=ASYNC) as r:
            assert r.status == 202
        await echo.arrived.get()  # the job's upstream call is held: longer than the drain
        in_flight = asyncio.create_task(session.get(f"{base}/hold/sync"))  # held too
        await echo.arrived.get()

        process.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        assert await wait_status(session, f"{base}/_atk/ready", 503) < 0.5
        async with aiohttp.ClientSession() as fresh, fresh.get(f"{base}/_atk/health") as r:
            assert r.status == 200  # a new connection is still served during the delay
        out, _ = await asyncio.wait_for(process.communicate(), 10)
        took = time.monotonic() - stopping
        in_flight.cancel()
    assert process.returncode == 0
    assert DELAY <= took < DELAY + DRAIN + 1, out.decode()
    lines = json_lines(out.decode())
    [drained] = [line for line in lines if line["event"] == "engine stopped"]
    assert drained["jobs_left_in_store"] == 1  # the running job, for the next start
    assert lines[-1]["event"] == "stopped"
