"""A restart with the SQLite store loses nothing: every accepted job is carried on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from .conftest import ProxyFactory, Receiver
from .support import ASYNC, Echo, wait_job


def sqlite_config(tmp_path: Path, **async_section: Any) -> dict[str, Any]:
    routes = [{"path": "/hold/safe", "replay_safe": True}]
    return {
        "store": {"url": f"sqlite:///{tmp_path / 'state' / 'jobs.db'}"},
        "async": {"drain_timeout": "100ms", "routes": routes, **async_section},
    }


async def test_job_is_visible_after_restart(
    tmp_path: Path, upstream: str, make_proxy: ProxyFactory
) -> None:
    config = sqlite_config(tmp_path)
    first = await make_proxy(upstream, config, automatiko=False)
    async with first.post("/done", json={"a": 1}, headers=ASYNC) as r:
        location = r.headers["Location"]
    before = await wait_job(first, location)
    await first.close()

    second = await make_proxy(upstream, config, automatiko=False)
    assert await wait_job(second, location) == before
    async with second.get(f"{location}/result") as r:
        assert (r.status, (await r.json())["body"]) == (200, '{"a": 1}')


async def test_interrupted_jobs_are_rerun_or_failed_and_queued_jobs_run(
    tmp_path: Path, upstream: str, echo: Echo, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    config = sqlite_config(tmp_path, max_inflight=2)
    headers = {**ASYNC, "X-ATK-Callback": receiver.url}
    first = await make_proxy(upstream, config, automatiko=False)
    locations = {}
    for name in ("unsafe", "safe", "queued"):
        async with first.post(f"/hold/{name}", json={}, headers=headers) as r:
            assert r.status == 202
            locations[name] = r.headers["Location"]
        if name != "queued":
            await echo.arrived.get()  # two run (and hang); the third waits in the queue
    await first.close()  # the drain gives up on the two running calls
    assert receiver.received == []

    echo.release.set()
    second = await make_proxy(upstream, config, automatiko=False)
    views = {name: await wait_job(second, loc, ("delivered",)) for name, loc in locations.items()}
    assert views["unsafe"]["status"] == "Failed"
    assert views["unsafe"]["reason"].startswith("interrupted")
    assert views["unsafe"]["upstream"] == {"status": 502, "error": views["unsafe"]["reason"]}
    assert views["safe"]["status"] == "Completed"
    assert views["queued"]["status"] == "Completed"
    statuses = sorted(c.headers["X-ATK-Status"] for c in receiver.received)
    assert statuses == ["Completed", "Completed", "Failed"]


def files_text(folder: Path) -> bytes:
    return b"".join(path.read_bytes() for path in folder.rglob("*") if path.is_file())


@pytest.mark.parametrize("with_key", [True, False], ids=["secret-key", "no-key"])
async def test_credentials_never_rest_in_clear_and_replay_only_with_a_key(
    tmp_path: Path, upstream: str, echo: Echo, make_proxy: ProxyFactory, with_key: bool
) -> None:
    config = sqlite_config(tmp_path)
    if with_key:
        config["store"]["secret_key"] = Fernet.generate_key().decode()
    headers = {**ASYNC, "Authorization": "Bearer t0ps3cret", "Cookie": "sid=c00kie"}
    first = await make_proxy(upstream, config, automatiko=False)
    async with first.post("/hold/safe", json={}, headers=headers) as r:
        location = r.headers["Location"]
    assert [v for k, v in (await echo.arrived.get())["headers"] if k == "Authorization"] == [
        "Bearer t0ps3cret"
    ]
    await first.close()
    assert b"t0ps3cret" not in files_text(tmp_path / "state")
    assert b"c00kie" not in files_text(tmp_path / "state")

    echo.release.set()
    second = await make_proxy(upstream, config, automatiko=False)
    owner = {k: v for k, v in headers.items() if k in ("Authorization", "Cookie")}
    await wait_job(second, location, headers=owner)  # the job is theirs (ownership.py)
    replayed = dict(echo.seen[-1]["headers"])
    assert replayed.get("Authorization") == ("Bearer t0ps3cret" if with_key else None)
