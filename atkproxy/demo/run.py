"""`atkproxy demo`: the example backend, the proxy and a callback receiver in one process.

It sends the seed's request, `POST /registrations` with `{"name":"john","lastName":"doe"}`
in async mode with a callback, and prints the 202, the callback and the job record.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from ..app import create_app
from ..observability import configure_logging
from ..settings import Logging, Settings
from .backend import create_backend
from .receiver import CallbackReceiver, Received

SEED = {"name": "john", "lastName": "doe"}


def preset(name: str = "automatiko") -> dict[str, Any]:
    text = resources.files("atkproxy.presets").joinpath(f"{name}.yaml").read_text()
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


def show(title: str, status: int | str, headers: Mapping[str, str], body: bytes) -> None:
    print(f"\n--- {title}: {status}")
    for name, value in headers.items():
        if name.lower().startswith("x-atk-") or name.lower() in ("location", "content-type"):
            print(f"{name}: {value}")
    print(json.dumps(json.loads(body), indent=2) if body else "(no body)")


async def run_demo() -> int:
    configure_logging(Logging(format="console"))
    receiver = CallbackReceiver()
    with tempfile.TemporaryDirectory(prefix="atkproxy-demo-") as tmp:
        backend, backend_url = await serve(create_backend())
        callbacks, callbacks_url = await serve(receiver.app)
        config = preset()
        config["upstream"]["url"] = backend_url
        config["store"]["url"] = f"sqlite:///{Path(tmp) / 'jobs.db'}"
        # the receiver is on loopback, which callbacks may not reach unless allowed
        config.setdefault("callback", {})["destinations"] = {"allow": ["127.0.0.1/32"]}
        proxy, proxy_url = await serve(create_app(Settings.model_validate(config)))
        try:
            await exchange(proxy_url, f"{callbacks_url}/callbacks", receiver)
        finally:
            for runner in (proxy, callbacks, backend):
                await runner.cleanup()
    return 0


async def exchange(proxy_url: str, callback_url: str, receiver: CallbackReceiver) -> None:
    headers = {"X-ATK-Mode": "async", "X-ATK-Callback": callback_url}
    print(f"proxy at {proxy_url}; POST /registrations {json.dumps(SEED)}")
    print(f"X-ATK-Mode: async\nX-ATK-Callback: {callback_url}")
    async with aiohttp.ClientSession() as client:
        async with client.post(f"{proxy_url}/registrations", json=SEED, headers=headers) as r:
            show("202 from the proxy", r.status, r.headers, await r.read())
            location = r.headers["Location"]
        got: Received = await receiver.next(timeout=30)
        show(f"callback {got.method} {got.path}", "", got.headers, got.body)
        status, view = await settled_view(client, f"{proxy_url}{location}")
        print(f"\n--- GET {location}: {status}")
        print(json.dumps(view, indent=2))


async def settled_view(
    client: aiohttp.ClientSession, url: str, deadline: float = 10.0
) -> tuple[int, Any]:
    """The job record once the delivery is recorded: the callback reaches the receiver a
    moment before the proxy saves its outcome."""
    end = time.monotonic() + deadline
    while True:
        async with client.get(url) as r:
            status, view = r.status, await r.json()
        if status != 200 or view.get("state") != "delivering" or time.monotonic() > end:
            return status, view
        await asyncio.sleep(0.05)
