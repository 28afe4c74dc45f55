"""The proxy as a real process, as an operator starts it: command line, real ports, signals."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]


async def atkproxy(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "atkproxy",
        *args,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await atkproxy(*args, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def wait_healthy(session: aiohttp.ClientSession, url: str, deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while True:
        try:
            async with session.get(url) as r:
                if r.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        assert time.monotonic() < end, "the proxy did not become healthy"
        await asyncio.sleep(0.05)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line parsed as one JSON object; fails on the first line that is not one."""
    return [json.loads(line) for line in text.splitlines()]


async def start_proxy(*defines: str) -> asyncio.subprocess.Process:
    """`python -m atkproxy -D key=value ...` whose output is not kept (a long run would fill
    a pipe nobody reads); tests of such runs read the job API instead."""
    args = [arg for define in defines for arg in ("-D", define)]
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "atkproxy", *args, cwd=ROOT, env=dict(os.environ),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


async def kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL: the process gets no chance to drain or save anything."""
    if process.returncode is None:
        process.kill()
    await process.wait()
