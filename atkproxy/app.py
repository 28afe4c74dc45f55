"""create_app: wires the components; each resource is one cleanup context, torn down in reverse."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from .accept import Acceptor
from .auth import create_auth
from .callback import Deliverer, callback_client
from .connections import LISTEN, GuardedApplication, handler_args, origin_form_only
from .drain import drain_grace
from .engine import Engine
from .http1 import Http1Upstream
from .keys import ACCEPTOR, AUTH, DRAINING, ENGINE, METRICS, SETTINGS, STORE, UPSTREAM
from .listeners import add_management
from .metering import counted
from .metrics import MeasuredStore, Metrics
from .proxy import handle
from .resolver import policy_for, protect_named_endpoints
from .settings import Settings, TlsSettings
from .steps import Steps, Worker
from .store import JobStore, open_store
from .store.sealed import SealedStore

log = structlog.get_logger("atkproxy")

Context = Callable[[web.Application], AsyncIterator[None]]


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    store = await open_store(
        settings.store.url,
        password=settings.store.password,
        redis_prefix=settings.store.redis_prefix,
    )
    if not settings.store.url.startswith("memory://"):
        protected = [*settings.store.protected_headers, *on_behalf_header(settings)]
        store = SealedStore(store, protected, settings.store.secret_key)
        if settings.store.secret_key is None:
            log.warning(
                "no store.secret_key: credential headers of accepted jobs are kept in memory "
                "only, and a job recovered after a restart runs without them",
                headers=protected,
            )
    app[STORE] = MeasuredStore(store, app[METRICS])
    yield
    await app[STORE].close()


def on_behalf_header(settings: Settings) -> list[str]:
    auth = settings.callback.auth
    return [auth.on_behalf_name] if auth.type == "on-behalf" else []


async def upstream_ctx(app: web.Application) -> AsyncIterator[None]:
    up = app[SETTINGS].upstream
    context = tls_context("upstream", up.tls)
    app[UPSTREAM] = Http1Upstream(
        up.url, up.timeout, up.connect_timeout, up.max_connections, context
    )
    yield
    await app[UPSTREAM].close()


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    auth = app[SETTINGS].callback.auth
    if auth.type != "none" and auth.any_destination:
        log.warning(
            "callback.auth.any_destination: the callback credentials go to any permitted "
            "callback URL a client names, not only to callback.destinations.allow",
            mode=auth.type,
        )
    app[AUTH] = create_auth(auth)
    yield
    await app[AUTH].close()


async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    destinations = policy_for(settings)
    await protect_named_endpoints(destinations)
    context = tls_context("callback", settings.callback.tls)
    callback = settings.callback
    client = callback_client(callback.timeout, destinations, context, callback.max_inflight)
    async with client:
        deliverer = Deliverer(client, app[AUTH], callback.signing.keys)

        def make_steps(worker: Worker) -> Steps:
            return Steps(
                settings, app[STORE], app[UPSTREAM], deliverer, app[AUTH], worker, app[METRICS]
            )

        engine = Engine(settings, app[STORE], make_steps, shared_store=is_shared(settings))
        app[ENGINE] = engine
        app[ACCEPTOR] = Acceptor(settings, app[STORE], engine, app[AUTH], destinations)
        await engine.start()
        yield
        await engine.drain(drain_grace(app, settings.async_.drain_timeout))


def tls_context(section: str, tls: TlsSettings) -> ssl.SSLContext:
    if not tls.verify:
        log.warning(f"{section}.tls.verify is false: https certificates are not checked")
    return tls.context()


def is_shared(settings: Settings) -> bool:
    """Whether other processes claim from the same store (their leases are live)."""
    return not settings.store.url.startswith(("memory://", "sqlite:"))


def create_app(settings: Settings, *, store: JobStore | None = None) -> web.Application:
    """The proxy as an aiohttp application; `store` replaces the one store.url names."""
    app = GuardedApplication(
        handler_args=handler_args(settings.listen), middlewares=[origin_form_only]
    )
    app[SETTINGS] = settings
    app[LISTEN] = settings.listen
    app[DRAINING] = asyncio.Event()
    app[METRICS] = metrics = Metrics()
    contexts: list[Context] = [upstream_ctx, auth_ctx, engine_ctx]
    if store is None:
        contexts.insert(0, store_ctx)
    else:
        app[STORE] = MeasuredStore(store, metrics)
    app.cleanup_ctx.extend(contexts)
    add_management(app, settings)  # after the contexts: its listener needs them
    app.router.add_route("*", r"/{tail:[\s\S]*}", counted(handle, metrics))  # any path, %0A too
    return app
