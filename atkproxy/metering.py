"""Metrics at the edges of the app: the request count around the catch-all handler, and
`GET <management.prefix>/metrics`, which reads the store's and the engine's gauges afresh."""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from .accept import ASYNC_METHODS, requested_mode
from .errors import Rejected
from .keys import ENGINE, METRICS, STORE
from .metrics import Metrics, Scrape

log = structlog.get_logger("atkproxy.metrics")


def counted(handler: Handler, metrics: Metrics) -> Handler:
    """`handler`, counting each answer in atkproxy_requests_total{mode,status}."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            metrics.request(mode_of(request, exc), exc.status)
            raise
        except Exception:
            metrics.request(mode_of(request, None), 500)
            raise
        metrics.request(mode_of(request, response), response.status)
        return response

    return handle


def mode_of(request: web.Request, response: web.StreamResponse | None) -> str:
    """async: accepted as a job, or refused while asking to be one; else sync."""
    if response is not None:
        if "X-ATK-Job" in response.headers:
            return "async"
        if response.status < 400:  # the pass-through path stops here
            return "sync"
    try:
        asked = requested_mode(request.headers).is_async
    except Rejected:
        return "sync"  # not a valid request for either mode: counted as the default
    return "async" if asked and request.method in ASYNC_METHODS else "sync"


async def metrics_endpoint(request: web.Request) -> web.Response:
    """The Prometheus text format. A store that cannot be read leaves the job gauges out
    (atkproxy_store_up 0) instead of failing the scrape: the rest matters most then."""
    app = request.app
    try:
        counts = await app[STORE].counts()
    except Exception as exc:
        log.warning("metrics: reading the job counts failed", error=exc.__class__.__name__)
        counts = None
    engine = app[ENGINE]
    scrape = Scrape(counts, engine.admission.waiting, engine.upstream.running,
                    engine.delivery.running, engine.answers.held)  # fmt: skip
    body, content_type = app[METRICS].exposition(scrape, request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})
