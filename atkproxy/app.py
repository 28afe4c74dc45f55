"""create_app: wires the components; each resource is one cleanup context, torn down in reverse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from . import management
from .accept import Acceptor
from .auth import create_auth
from .callback import Deliverer, callback_session
from .drain import drain_grace, report_left
from .forward import Upstream
from .keys import ACCEPTOR, AUTH, DRAINING, SETTINGS, STORE, UPSTREAM
from .proxy import handle
from .runner import Runner
from .settings import Settings
from .store import JobStore, open_store
from .store.sealed import SealedStore

log = structlog.get_logger("atkproxy")

Context = Callable[[web.Application], AsyncIterator[None]]


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_store(settings.store.url)
    if not settings.store.url.startswith("memory://"):
        protected = [*settings.store.protected_headers, *on_behalf_header(settings)]
        store = SealedStore(store, protected, settings.store.secret_key)
        if settings.store.secret_key is None:
            log.warning(
                "no store.secret_key: credential headers of accepted jobs are kept in memory "
                "only, and a job recovered after a restart runs without them",
                headers=protected,
            )
    app[STORE] = store
    yield
    await app[STORE].close()


def on_behalf_header(settings: Settings) -> list[str]:
    auth = settings.callback.auth
    return [auth.on_behalf_name] if auth.type == "on-behalf" else []


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    up = app[SETTINGS].upstream
    app[UPSTREAM] = Upstream(up.url, up.timeout, up.connect_timeout, up.max_connections)
    yield
    await app[UPSTREAM].close()


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    app[AUTH] = create_auth(app[SETTINGS].callback.auth)
    yield
    await app[AUTH].close()


async def runner_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with callback_session(settings.callback.timeout) as session:
        deliverer = Deliverer(session, app[AUTH])
        runner = Runner(settings, app[STORE], app[UPSTREAM], deliverer, app[AUTH])
        app[ACCEPTOR] = Acceptor(settings, app[STORE], runner, app[AUTH])
        await runner.start()
        yield
        grace = drain_grace(app, settings.async_.drain_timeout)
        await runner.drain(grace)
        await report_left(app[STORE], grace)


def create_app(settings: Settings, *, store: JobStore | None = None) -> web.Application:
    """The proxy as an aiohttp application; `store` replaces the one store.url names."""
    app = web.Application(handler_args={"max_field_size": 16 * 1024})
    app[SETTINGS] = settings
    app[DRAINING] = asyncio.Event()
    contexts: list[Context] = [upstream_ctx, auth_ctx, runner_ctx]
    if store is None:
        contexts.insert(0, store_ctx)
    else:
        app[STORE] = store
    app.cleanup_ctx.extend(contexts)
    management.add_routes(app, settings.management.prefix)
    app.router.add_route("*", r"/{tail:[\s\S]*}", handle)  # any path, %0A included
    return app
