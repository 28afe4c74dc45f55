"""The server's life: start, serve until SIGTERM (or SIGINT), stop within a stated bound.

On the signal, readiness answers 503 at once and connections are still served for
`listen.shutdown_delay`, so that endpoints and load balancers stop sending traffic first. Then
the listener closes, and in-flight requests and running jobs share what is left of
`async.drain_timeout`: jobs still running then are cancelled and stay in the store for the next
start. The whole shutdown takes at most `shutdown_delay + drain_timeout` and the time to close
the store, which is what `terminationGracePeriodSeconds` must exceed.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

import structlog
from aiohttp import web

from .app import create_app
from .drain import drain_grace
from .inflight import InFlight
from .keys import DRAINING, SHUTDOWN_DEADLINE
from .observability import AccessLogger
from .server import ProxyRunner
from .settings import Settings

log = structlog.get_logger("atkproxy")


def settle_heap() -> None:
    """Put what the start made (modules, settings, the application) out of the garbage
    collector's sight: it lives as long as the process, and every full collection walked all
    of it, in pauses that were the pass-through's p99 (halved with this, see
    benchmarks/RESULTS.md). Objects made later are collected as before."""
    gc.collect()
    gc.freeze()


async def serve(settings: Settings) -> None:
    """Serve until a stop signal, then shut down as the module docstring says."""
    stopped = stop_signal()  # first: a SIGTERM during the start is a stop, not a kill
    app = create_app(settings)
    in_flight = InFlight()
    access = logging.getLogger("atkproxy.access") if settings.logging.access else None
    # handlers are waited for below; the few that outlive the deadline are cancelled at once
    runner = ProxyRunner(
        app,
        in_flight=in_flight,
        access_log_class=AccessLogger,
        access_log=access,
        shutdown_timeout=0.1,
    )
    try:
        await runner.setup()
        settle_heap()
        await web.TCPSite(runner, settings.listen.host, settings.listen.port).start()
        log.info("listening", addresses=[f"{a[0]}:{a[1]}" for a in runner.addresses])
        received = await stopped
        await begin_shutdown(app, settings, received)
        for site in list(runner.sites):
            await site.stop()
        left = await in_flight.wait(drain_grace(app, settings.async_.drain_timeout))
        log.info("listener closed", requests_left=left)
    finally:
        await runner.cleanup()


async def begin_shutdown(app: web.Application, settings: Settings, received: str) -> None:
    loop = asyncio.get_running_loop()
    delay, drain = settings.listen.shutdown_delay, settings.async_.drain_timeout
    app[DRAINING].set()
    app[SHUTDOWN_DEADLINE] = loop.time() + delay + drain
    log.info("shutting down", signal=received, shutdown_delay=delay, drain_timeout=drain)
    await asyncio.sleep(delay)  # a fixed pause by design: endpoints need time to update


def stop_signal() -> asyncio.Future[str]:
    """Set to the name of the first SIGTERM or SIGINT; later ones are ignored (the stop is
    bounded anyway)."""
    loop = asyncio.get_running_loop()
    got: asyncio.Future[str] = loop.create_future()

    def received(sig: signal.Signals) -> None:
        if not got.done():
            got.set_result(sig.name)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, received, sig)
    return got
