"""Where the management API is served: under its prefix on the main port, or its own listener.

With `management.listen.port` set, the main port serves no management path (every request
passes through to the upstream, `/_atk/...` included) and the job API, health and readiness
answer on `management.listen.host:port` only. That listener is a second aiohttp
application in the same process, sharing the main application's components; it is opened
by a cleanup context of the main application, after the components it shares exist, and
closed before they are torn down. So whoever runs the main application (`cli.py serve`,
a test server) gets both listeners without knowing about the second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from . import management
from .connections import LISTEN, GuardedApplication, handler_args, origin_form_only
from .keys import DRAINING, ENGINE, SETTINGS, STORE
from .settings import Settings

log = structlog.get_logger("atkproxy")

Context = Callable[[web.Application], AsyncIterator[None]]


def separate(settings: Settings) -> bool:
    return settings.management.listen.port is not None


def add_management(app: web.Application, settings: Settings) -> None:
    """The management routes on the main application, or the listener that serves them."""
    readiness = management.Readiness()
    if separate(settings):
        app.cleanup_ctx.append(management_listener(settings, readiness))
    else:
        management.add_routes(app, settings.management.prefix, readiness)


def management_app(main: web.Application, readiness: management.Readiness) -> web.Application:
    """An application with the management routes over the main application's components."""
    settings = main[SETTINGS]
    app = GuardedApplication(
        handler_args=handler_args(settings.listen), middlewares=[origin_form_only]
    )
    app[SETTINGS], app[LISTEN] = settings, settings.listen
    app[STORE], app[ENGINE], app[DRAINING] = main[STORE], main[ENGINE], main[DRAINING]
    management.add_routes(app, settings.management.prefix, readiness)
    return app


def management_listener(settings: Settings, readiness: management.Readiness) -> Context:
    async def listener(main: web.Application) -> AsyncIterator[None]:
        where = settings.management.listen
        runner = web.AppRunner(management_app(main, readiness), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, where.host, where.port).start()
            log.info("management listener", listen=f"{where.host}:{where.port}")
            yield
        finally:
            await runner.cleanup()

    return listener
