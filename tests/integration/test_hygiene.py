"""No secret in what the proxy shows: error texts, check-config, logs, the store file."""

from __future__ import annotations

import asyncio
import base64
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.fernet import Fernet

from .conftest import ProxyFactory, Receiver, ServerFactory, start_app
from .support import ASYNC, Echo, wait_job
from .test_cli import atkproxy, free_port, run, wait_healthy


@pytest.fixture
async def broken_receiver() -> AsyncIterator[str]:
    """A receiver that answers with a malformed HTTP header."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nBroken Header\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/cb"
    server.close()


async def test_an_error_text_holds_no_url(
    aiohttp_server: ServerFactory, make_proxy: ProxyFactory, broken_receiver: str
) -> None:
    once = {"callback": {"retry": {"schedule": ["0s"]}}}
    proxy = await make_proxy(await start_app(aiohttp_server, Echo().app), once, automatiko=False)
    callback = broken_receiver + "?token=s3cr3t"
    async with proxy.post("/x", json={}, headers={**ASYNC, "X-ATK-Callback": callback}) as r:
        assert r.status == 202
        location = r.headers["Location"]
    view = await wait_job(proxy, location)
    [attempt] = view["callback"]["attempts"]
    assert attempt["error"].startswith("callback failed: ")
    assert "s3cr3t" not in attempt["error"] and "://" not in attempt["error"]


async def test_check_config_masks_url_query_values() -> None:
    code, out, _ = await run(
        "check-config", "-D", "upstream.url=http://127.0.0.1:1/base?api_key=s3cr3t-value"
    )
    assert code == 0
    assert "s3cr3t-value" not in out
    assert "http://127.0.0.1:1/base?api_key=**********" in out


def store_files(folder: Path) -> bytes:
    """The SQLite file and its journal, as an attacker reading the volume would see them."""
    return b"".join(path.read_bytes() for path in sorted(folder.glob("jobs.db*")))


SIGNING = "whsec_" + base64.b64encode(b"signing-secret-value-123").decode()
SECRETS = ["qu3ry-secret", "t0ps3cret", "m4lformed", "api-s3cret", SIGNING.removeprefix("whsec_"),
           "m4nagement-t0ken", "0wner-key-value"]  # fmt: skip


async def test_a_full_run_shows_no_secret(
    tmp_path: Path, aiohttp_server: ServerFactory, receiver: Receiver
) -> None:
    async def quiet(request: web.Request) -> web.Response:  # a backend echoes no credential
        return web.json_response({"ok": True})

    backend = web.Application()
    backend.router.add_route("*", "/{tail:.*}", quiet)
    upstream, port = await start_app(aiohttp_server, backend), free_port()
    store, key = tmp_path / "jobs.db", Fernet.generate_key().decode()
    process = await atkproxy(
        *("-D", f"listen.port={port}", "-D", "listen.host=127.0.0.1"),
        *("-D", f"upstream.url={upstream}/?api_key=api-s3cret"),
        *("-D", f"store.url=sqlite:///{store}", "-D", f"store.secret_key={key}"),
        *("-D", "callback.auth.type=query", "-D", "callback.auth.query_name=token"),
        *("-D", "callback.auth.query_value=qu3ry-secret"),
        *("-D", "callback.destinations.allow=[127.0.0.1/32]"),
        *("-D", f"callback.signing.secrets=[{SIGNING}]"),
        *("-D", "management.token=m4nagement-t0ken", "-D", "management.owner_key=0wner-key-value"),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, f"{base}/_atk/health")
        headers = {**ASYNC, "X-ATK-Callback": receiver.url, "Authorization": "Bearer t0ps3cret"}
        async with session.post(f"{base}/orders", json={}, headers=headers) as r:
            assert r.status == 202
        assert (await receiver.next()).query == {"token": "qu3ry-secret"}
        operator = {"Authorization": "Bearer m4nagement-t0ken"}
        async with session.get(f"{base}/_atk/jobs", headers=operator) as r:
            assert r.status == 200 and len((await r.json())["jobs"]) == 1
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: p\r\nAuthorization: Basic m4lformed\x7f\r\n\r\n")
    answer = await reader.read()
    writer.close()
    process.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    assert answer.startswith(b"HTTP/1.0 400 ")
    shown = answer + out + err + store_files(tmp_path)
    assert [s for s in SECRETS if s.encode() in shown] == []
    assert b"api_key=**********" in out  # the start line shows the upstream, masked
