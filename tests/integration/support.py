"""Test upstreams and polling helpers shared by the integration tests."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Collection
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import strategies as st

from atkproxy.jobs import Job, JobState
from atkproxy.keys import ENGINE
from atkproxy.store.memory import MemoryStore

ASYNC = {"X-ATK-Mode": "async"}
TERMINAL = ("finished", "delivered", "dead")


class Echo:
    """An upstream that answers with what it received, and can be held until released."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.arrived: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.release = asyncio.Event()
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.app.router.add_route("*", "/hold/{tail:.*}", self.hold)
        self.app.router.add_route("*", "/status/{code}", self.status)
        self.app.router.add_post("/sha256", self.sha256)
        self.app.router.add_route("*", "/bytes/{count}", self.download)
        self.app.router.add_get("/cookies", self.cookies)
        self.app.router.add_get("/broken", self.broken)
        self.app.router.add_route("*", r"/{tail:[\s\S]*}", self.echo)

    async def record(self, request: web.Request) -> dict[str, Any]:
        seen = {
            "method": request.method,
            "path_qs": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": (await request.read()).decode("latin-1"),
        }
        self.seen.append(seen)
        self.arrived.put_nowait(seen)
        return seen

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response(await self.record(request), headers={"X-Upstream": "echo"})

    async def hold(self, request: web.Request) -> web.Response:
        seen = await self.record(request)
        await self.release.wait()
        return web.json_response(seen)

    async def status(self, request: web.Request) -> web.Response:
        await self.record(request)
        code = int(request.match_info["code"])
        body = None if code in (204, 304) else f'{{"code": {code}}}'.encode()
        return web.Response(status=code, body=body, content_type="application/json")

    async def sha256(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256()
        async for chunk in request.content.iter_chunked(65536):
            digest.update(chunk)
        return web.json_response(
            {
                "sha256": digest.hexdigest(),
                "chunked": request.headers.get("Transfer-Encoding") == "chunked",
            }
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        count = int(request.match_info["count"])
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        try:
            for offset in range(0, count, 65536):
                await response.write(pattern(offset, min(65536, count - offset)))
            await response.write_eof()
        except ConnectionError:
            pass  # the proxy hung up (its client left): not an error of this upstream
        return response

    async def broken(self, request: web.Request) -> web.StreamResponse:
        """Promises 1 MiB, sends 64 KiB, then drops the connection."""
        response = web.StreamResponse(headers={"Content-Length": str(1 << 20)})
        await response.prepare(request)
        await response.write(pattern(0, 65536))
        assert request.transport is not None
        request.transport.close()
        return response

    async def cookies(self, request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response


def pattern(offset: int, size: int) -> bytes:
    return bytes((offset + i) % 251 for i in range(size))


def header_names(seen: dict[str, Any]) -> set[str]:
    return {name.lower() for name, _ in seen["headers"]}


async def job_view(
    client: TestClient[Any, Any], location: str, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with client.get(location, headers=headers) as response:
        assert response.status == 200, await response.text()
        view: dict[str, Any] = await response.json()
        return view


async def wait_job(
    client: TestClient[Any, Any],
    location: str,
    states: tuple[str, ...] = TERMINAL,
    deadline: float = 10.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Poll the job API until the job is in one of `states`, failing after `deadline` s."""
    end = time.monotonic() + deadline
    while True:
        view = await job_view(client, location, headers)
        if view["state"] in states:
            return view
        assert time.monotonic() < end, f"job still {view['state']} after {deadline}s"
        await asyncio.sleep(0.02)


class FailingStore(MemoryStore):
    """The memory store, whose writes fail while `failing` is set (a full disk, a store
    that went away); `failures` counts the writes refused."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False
        self.failures = 0

    def _check(self) -> None:
        if self.failing:
            self.failures += 1
            raise OSError(28, "No space left on device")

    async def add(self, job: Job) -> Job:
        self._check()
        return await super().add(job)

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        self._check()
        return await super().claim(owner, states, now, until, limit)

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        self._check()
        return await super().renew(owner, job_ids, until)

    async def update(self, job: Job, owner: str | None) -> None:
        self._check()
        await super().update(job, owner)

    async def ping(self) -> None:
        self._check()


async def idle(client: TestClient[Any, Any], deadline: float = 10.0) -> None:
    """Wait until the proxy's engine runs nothing and has nothing due (arq's burst mode)."""
    async with asyncio.timeout(deadline):
        await client.app[ENGINE].until_idle()  # type: ignore[index]


async def stored(store: MemoryStore) -> int:
    return sum((await store.counts()).values())


async def until(check: Callable[[], bool], deadline: float = 10.0) -> None:
    """Poll `check()` until it is true, failing after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.01)


# header names and values any HTTP/1.1 peer must pass as they are (hypothesis strategies)
EXTENSION_HEADER_NAMES = st.from_regex(r"X-[A-Za-z0-9-]{1,20}", fullmatch=True)
HEADER_VALUES = st.from_regex(r"[!-~]([ !-~]{0,40}[!-~])?", fullmatch=True)
