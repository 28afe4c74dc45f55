"""The command line as an operator uses it: real processes, real ports."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest
import yaml

from atkproxy import malloc
from atkproxy.malloc import is_glibc

from .conftest import Receiver, ServerFactory, start_app
from .processes import atkproxy, free_port, json_lines, run, wait_healthy
from .support import ASYNC, Echo


async def test_check_config_layers_file_env_and_defines() -> None:
    code, out, _ = await run(
        "check-config",
        "--config",
        "config/automatiko.yaml",
        "-D",
        "upstream.timeout=1m",
        "-D",
        "listen.port=9001",
        env={"ATKPROXY_LISTEN__PORT": "9000", "ATKPROXY_ASYNC__MAX_BODY": "2MiB"},
    )
    assert code == 0
    effective = yaml.safe_load(out)
    assert effective["listen"]["port"] == 9001
    assert effective["upstream"]["timeout"] == 60.0
    assert effective["async"]["max_body"] == 2 * 1024 * 1024
    assert effective["upstream"]["url"] == "http://127.0.0.1:8081"
    assert "#   listen.port: -D" in out
    assert "#   async.max_body: env" in out
    assert "#   upstream.url: file config/automatiko.yaml" in out


async def test_invalid_config_names_the_key_and_fails() -> None:
    code, _, err = await run("check-config", "-D", "async.max_body=lots", "-D", "listen.porty=1")
    assert code == 2
    assert "async.max_body: Value error, invalid size 'lots'" in err
    assert "listen.porty: Extra inputs are not permitted" in err


async def test_demo_shows_the_exchange() -> None:
    code, out, _ = await run("demo")
    assert code == 0
    assert "--- 202 from the proxy: 202" in out
    assert "X-ATK-Status: Completed" in out
    assert '"state": "delivered"' in out


async def test_serve_logs_json_and_stops_on_sigterm(
    tmp_path: Path, aiohttp_server: ServerFactory, receiver: Receiver
) -> None:
    upstream, port = await start_app(aiohttp_server, Echo().app), free_port()
    process = await atkproxy(
        "-D",
        f"listen.port={port}",
        "-D",
        "listen.host=127.0.0.1",
        "-D",
        f"upstream.url={upstream}",
        "-D",
        f"store.url=sqlite:///{tmp_path / 'jobs.db'}",
        "-D",
        "callback.destinations.allow=[127.0.0.1/32]",
        "-D",
        "listen.shutdown_delay=0",
    )
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, f"{base}/_atk/health")
        headers = {**ASYNC, "X-ATK-Callback": receiver.url, "Authorization": "Bearer t0ps3cret"}
        async with session.post(f"{base}/orders", json={}, headers=headers) as r:
            assert r.status == 202
            job_id = r.headers["X-ATK-Job"]
        await receiver.next()
    process.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    lines = json_lines(out.decode())
    events = {(line["event"], line.get("job")) for line in lines}
    assert {("job accepted", job_id), ("job finished", job_id)} <= events
    assert ("callback delivered", job_id) in events
    assert "t0ps3cret" not in out.decode()
    [starting] = [line for line in lines if line["event"] == "starting"]
    mapped = is_glibc() and malloc.ENV not in os.environ  # atkproxy.malloc: answers go back
    assert starting["malloc_mmap_threshold"] == (malloc.MMAP_THRESHOLD if mapped else None)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_a_stop_loses_no_accepted_job(
    tmp_path: Path, aiohttp_server: ServerFactory, receiver: Receiver, stop: signal.Signals
) -> None:
    echo = Echo()
    upstream, port = await start_app(aiohttp_server, echo.app), free_port()
    defines = [
        "-D",
        f"listen.port={port}",
        "-D",
        "listen.host=127.0.0.1",
        "-D",
        f"upstream.url={upstream}",
        "-D",
        "async.max_inflight=1",
        "-D",
        "async.drain_timeout=300ms",
        "-D",
        "callback.destinations.allow=[127.0.0.1/32]",
        "-D",
        "listen.shutdown_delay=0",
        "-D",
        f"store.url=sqlite:///{tmp_path / 'jobs.db'}",
    ]
    base = f"http://127.0.0.1:{port}"
    headers = {**ASYNC, "X-ATK-Callback": receiver.url}
    first = await atkproxy(*defines)
    async with aiohttp.ClientSession() as session:
        await wait_healthy(session, f"{base}/_atk/health")
        jobs = []
        for n in range(5):
            async with session.post(f"{base}/hold/{n}", json={"n": n}, headers=headers) as r:
                assert r.status == 202
                jobs.append(r.headers["X-ATK-Job"])
        await echo.arrived.get()  # job 0 is running upstream; 1-4 wait in the queue
        first.send_signal(stop)  # SIGTERM: the drain gives the running call 300 ms, then stops
        assert await asyncio.wait_for(first.wait(), 30) == (0 if stop == signal.SIGTERM else -9)
        echo.release.set()

        second = await atkproxy(*defines)
        await wait_healthy(session, f"{base}/_atk/health")
        callbacks = {}
        for _ in jobs:
            got = await receiver.next(timeout=20)
            callbacks[got.headers["X-ATK-Job"]] = got.headers["X-ATK-Status"]
        second.send_signal(signal.SIGTERM)
        await second.communicate()
    assert callbacks == {job: "Completed" for job in jobs[1:]} | {jobs[0]: "Failed"}


async def test_config_errors_and_what_check_config_hides() -> None:
    code, _, err = await run(
        "check-config",
        "-D",
        "upstream.url=http://u:pw@127.0.0.1:1",
        "-D",
        "async.routes=[{path: '/{id:[}'}]",
    )
    assert code == 2
    assert "upstream.url: Value error, must not carry user info" in err
    assert "async.routes.0.path: Value error, invalid path template" in err
    assert "pw@" not in err

    token_url = "http://cb:t0k3npw@127.0.0.1:1/token"
    code, out, _ = await run(
        "check-config",
        "-D",
        "callback.auth.type=oauth",
        "-D",
        f"callback.auth.token_url={token_url}",
        "-D",
        "callback.auth.client_id=c",
        "-D",
        "callback.auth.client_secret=s3cr3t-value",
        "-D",
        "callback.destinations.allow=[cb.example]",
        env={"ATKPROXY_PORT": "tcp://10.96.0.7:8080", "ATKPROXY_SERVICE_HOST": "10.96.0.7"},
    )
    assert code == 0  # Kubernetes service-link variables are not configuration
    assert "t0k3npw" not in out and "s3cr3t-value" not in out
    assert "http://cb:**********@127.0.0.1:1/token" in out


async def test_callback_credentials_without_an_allow_list_refuse_to_start() -> None:
    auth = ["-D", "callback.auth.type=custom", "-D", "callback.auth.custom_name=X-Key"]
    auth += ["-D", "callback.auth.custom_value=s3cr3t-value", "-D", "listen.port=0"]
    code, out, err = await run(*auth)
    assert code == 2
    assert "callback.destinations.allow" in out and "s3cr3t-value" not in out + err


@pytest.mark.parametrize("kind", ["unopenable", "corrupt"])
async def test_a_store_that_cannot_open_is_one_line_and_exit_2(tmp_path: Path, kind: str) -> None:
    path = Path("/proc/none/jobs.db")
    if kind == "corrupt":
        path = tmp_path / "jobs.db"
        path.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 64)
    code, out, err = await run("-D", f"store.url=sqlite:///{path}", "-D", "listen.port=0")
    assert code == 2
    [*_, last] = json_lines(out)  # every line JSON: no traceback
    assert (last["event"], last["level"]) == ("cannot start", "critical")
    assert last["error"].startswith(f"store.url: cannot open sqlite:///{path}")
    assert "\n" not in last["error"] and "Traceback" not in out + err


async def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    code, out, _ = await run("--version")
    assert (code, out) == (0, f"atkproxy {version('atkproxy')}\n")
