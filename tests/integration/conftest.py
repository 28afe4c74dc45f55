"""Real servers on 127.0.0.1: example backend, test upstreams, callback receiver, proxy."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from atkproxy.app import create_app
from atkproxy.demo.backend import create_backend
from atkproxy.demo.receiver import CallbackReceiver
from atkproxy.demo.run import preset
from atkproxy.server import ProxyRunner
from atkproxy.settings import Settings
from atkproxy.store import JobStore

from .support import Echo

ServerFactory = Callable[..., Awaitable[TestServer]]
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


class ProxyFactory(Protocol):
    def __call__(
        self,
        upstream: str,
        config: dict[str, Any] | None = None,
        *,
        automatiko: bool = True,
        store: JobStore | None = None,
    ) -> Awaitable[TestClient[Any, Any]]: ...


def merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def proxy_settings(
    upstream: str, config: dict[str, Any] | None = None, *, automatiko: bool = True
) -> Settings:
    base = preset() if automatiko else {}
    defaults = {
        "upstream": {"url": upstream},
        "store": {"url": "memory://", "poll": "50ms"},
        # the receivers live on 127.0.0.1, which callbacks may not reach by default
        "callback": {"timeout": "5s", "destinations": {"allow": ["127.0.0.1/32"]}},
        "async": {"drain_timeout": "1s"},
    }
    return Settings.model_validate(merged(merged(base, defaults), config or {}))


@pytest.fixture
def echo() -> Echo:
    return Echo()


@pytest.fixture
async def upstream(echo: Echo, aiohttp_server: ServerFactory) -> str:
    """An Echo upstream (support.py): answers with what it received; can hold requests."""
    return await start_app(aiohttp_server, echo.app)


@pytest.fixture
async def backend(aiohttp_server: ServerFactory) -> TestServer:
    return await aiohttp_server(create_backend())


class Receiver(CallbackReceiver):
    url: str


@pytest.fixture
async def receiver(aiohttp_server: ServerFactory) -> Receiver:
    receiver = Receiver()
    server = await aiohttp_server(receiver.app)
    receiver.url = str(server.make_url("/callbacks"))
    return receiver


@pytest.fixture
def make_proxy(aiohttp_client: ClientFactory) -> ProxyFactory:
    async def make(
        upstream: str,
        config: dict[str, Any] | None = None,
        *,
        automatiko: bool = True,
        store: JobStore | None = None,
    ) -> TestClient[Any, Any]:
        settings = proxy_settings(upstream, config, automatiko=automatiko)
        return await aiohttp_client(ProxyTestServer(create_app(settings, store=store)))

    return make


class ProxyTestServer(TestServer):
    """Served as `atkproxy serve` serves it: pass-through on the low-level path (server.py)."""

    async def _make_runner(self, **kwargs: Any) -> web.AppRunner:
        return ProxyRunner(self.app, **kwargs)


def url_of(server: TestServer) -> str:
    return str(server.make_url("")).rstrip("/")


async def start_app(aiohttp_server: ServerFactory, app: web.Application) -> str:
    return url_of(await aiohttp_server(app))
