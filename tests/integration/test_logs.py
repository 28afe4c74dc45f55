"""What a real process writes: one JSON object per line on stdout, whatever wrote it."""

from __future__ import annotations

import asyncio
import signal
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp

from .conftest import Receiver, ServerFactory, start_app
from .processes import atkproxy, free_port, json_lines, run, wait_healthy
from .support import ASYNC, Echo

SECRET = "t0ps3cret"


async def serve_and_stop(
    tmp_path: Path, upstream: str, *defines: str, requests: Any
) -> tuple[str, str]:
    port = free_port()
    process = await atkproxy(
        *("-D", f"listen.port={port}", "-D", "listen.host=127.0.0.1"),
        *("-D", f"upstream.url={upstream}", "-D", f"store.url=sqlite:///{tmp_path / 'j.db'}"),
        *("-D", "listen.shutdown_delay=0"),
        *defines,
    )
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, f"http://127.0.0.1:{port}/_atk/health")
        await requests(session, f"http://127.0.0.1:{port}")
    process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 0, err
    return out.decode(), err.decode()


async def test_everything_on_stdout_is_one_json_object_per_line(
    tmp_path: Path, aiohttp_server: ServerFactory, receiver: Receiver
) -> None:
    upstream = await start_app(aiohttp_server, Echo().app)
    answers: dict[str, Any] = {}

    async def requests(session: aiohttp.ClientSession, base: str) -> None:
        headers = {**ASYNC, "X-ATK-Callback": receiver.url, "Authorization": f"Bearer {SECRET}"}
        async with session.post(f"{base}/orders?token={SECRET}", json={}, headers=headers) as r:
            answers["job"] = r.headers["X-ATK-Job"]
        await receiver.next()
        async with session.get(f"{base}/_atk/health") as r:
            answers["server"] = r.headers["Server"]
        oversized = {"Authorization": f"Bearer {SECRET}" + "x" * 20000}
        async with session.get(f"{base}/plain", headers=oversized) as r:
            answers["oversized"] = (r.status, r.headers["Server"])

    custom = ("callback.auth.type=custom", "callback.auth.custom_name=X-Key",
              f"callback.auth.custom_value={SECRET}",
              "callback.destinations.allow=[127.0.0.1/32]")  # fmt: skip
    defines = [arg for define in custom for arg in ("-D", define)]
    out, err = await serve_and_stop(tmp_path, upstream, *defines, requests=requests)
    assert err == ""
    lines = json_lines(out)  # fails on any line that is not JSON
    assert SECRET not in out
    events = [line["event"] for line in lines]
    assert (events[0], events[-1]) == ("starting", "stopped")
    assert lines[0]["version"] == version("atkproxy")
    assert lines[0]["settings"]["listen"]["shutdown_delay"] == 0
    assert lines[0]["settings"]["callback"]["auth"]["custom_value"] == "**********"
    assert answers["oversized"] == (400, "atkproxy")
    assert answers["server"] == "atkproxy"  # no versions
    [bad] = [line for line in lines if line["event"] == "malformed request"]
    assert (bad["logger"], bad["level"], bad["status"]) == ("atkproxy.http", "warning", 400)
    access = [line for line in lines if line.get("logger") == "atkproxy.access"]
    [accepted] = [line for line in access if line["method"] == "POST"]
    assert accepted["path"] == "/orders"  # no query: it may carry a credential
    assert (accepted["status"], accepted["mode"], accepted["job"]) == (202, "async", answers["job"])
    assert {"duration", "bytes"} <= accepted.keys()
    assert [line["status"] for line in access if line["path"] != "/orders"][-2:] == [200, 400]


async def test_the_access_log_can_be_turned_off(
    tmp_path: Path, aiohttp_server: ServerFactory
) -> None:
    upstream = await start_app(aiohttp_server, Echo().app)

    async def requests(session: aiohttp.ClientSession, base: str) -> None:
        async with session.get(f"{base}/plain") as r:
            assert r.status == 200

    off = ("-D", "logging.access=false")
    out, _ = await serve_and_stop(tmp_path, upstream, *off, requests=requests)
    assert "atkproxy.access" not in {line["logger"] for line in json_lines(out)}


async def test_a_fatal_start_error_is_one_json_line() -> None:
    code, out, err = await run("-D", "async.max_body=lots", "-D", "listen.port=0")
    assert (code, err) == (2, "")
    [line] = json_lines(out)
    assert (line["event"], line["level"]) == ("cannot start", "critical")
    assert "async.max_body: Value error, invalid size 'lots'" in line["error"]
