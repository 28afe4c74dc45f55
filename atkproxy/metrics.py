"""Prometheus metrics: every metric the proxy exports, defined here, one registry per app.

A registry of its own (not prometheus-client's global one) lets tests and several apps in
one process keep their counts apart. Code records with one-line calls; what the store and
the engine already know (jobs by state, backlog, busy slots) is read at scrape time
(`Scrape`), so nothing is counted twice and nothing drifts.

    atkproxy_requests_total{mode,status}       requests to the catch-all (not management)
    atkproxy_upstream_seconds{mode}            latency of upstream calls that got an answer
                                               (sync: to its headers; async: the whole call)
    atkproxy_upstream_retries_total            job calls that did not reach the upstream and
                                               are due again later
    atkproxy_callback_attempts_total{outcome}  delivered | retry | dead | stopped
    atkproxy_store_seconds{operation}          latency of each job store operation
    atkproxy_jobs{state}                       jobs in the store by state        (at scrape)
    atkproxy_dead_letters                      dead jobs, kept for re-drive      (at scrape)
    atkproxy_backlog{lane}                     jobs with work left (upstream: accepted and
                                               running; delivery: delivering)    (at scrape)
    atkproxy_waiting                           async requests accepted here and not yet
                                               claimed (what async.max_queue bounds)
    atkproxy_inflight{lane}                    upstream calls / deliveries running here
    atkproxy_store_up                          1 when the scrape could read the job counts
    atkproxy_answer_bytes                      upstream answer bytes jobs hold here (what
                                               async.max_answer_memory bounds)
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .jobs import DELIVERY_STATES, UPSTREAM_STATES, Job, JobState, UpstreamResult
from .store import JobStore

# Upstream calls are a workflow step: milliseconds to minutes.
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
# No `_created` series beside every counter and histogram: they would double the size of a
# scrape for a start time nobody reads (a process-wide switch of prometheus-client).
disable_created_metrics()  # type: ignore[no-untyped-call]

OUTCOMES = ("delivered", "retry", "dead", "stopped")
OPERATIONS = (
    "add", "claim", "renew", "expire_leases", "update", "get", "result", "page",
    "redeliver", "purge", "compact", "counts", "ping", "close",
)  # fmt: skip


@dataclass(slots=True)
class Scrape:
    """What is read afresh at each scrape; `counts` None: the store could not be read."""

    counts: dict[JobState, int] | None = None
    waiting: int = 0
    inflight_upstream: int = 0
    inflight_delivery: int = 0
    answer_bytes: int = 0


class ScrapeCollector(Collector):
    """Yields the gauges of the latest `Scrape` (set just before the exposition is made)."""

    def __init__(self) -> None:
        self.scrape = Scrape()

    def collect(self) -> Iterator[Metric]:
        s = self.scrape
        yield _gauge("atkproxy_waiting", "Async requests accepted here, not yet claimed",
                     s.waiting)  # fmt: skip
        inflight = GaugeMetricFamily(
            "atkproxy_inflight", "Upstream calls and deliveries running here", labels=["lane"]
        )
        inflight.add_metric(["upstream"], s.inflight_upstream)
        inflight.add_metric(["delivery"], s.inflight_delivery)
        yield inflight
        yield _gauge("atkproxy_answer_bytes", "Upstream answer bytes held by jobs here",
                     s.answer_bytes)  # fmt: skip
        yield _gauge("atkproxy_store_up", "1 when this scrape read the job counts",
                     int(s.counts is not None))  # fmt: skip
        if s.counts is not None:  # absent rather than stale when the store failed
            yield from _job_gauges(s.counts)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _job_gauges(counts: dict[JobState, int]) -> Iterator[Metric]:
    jobs = GaugeMetricFamily("atkproxy_jobs", "Jobs in the store by state", labels=["state"])
    for state in JobState:
        jobs.add_metric([state.value], counts.get(state, 0))
    yield jobs
    yield _gauge("atkproxy_dead_letters", "Dead jobs kept for re-drive",
                 counts.get(JobState.DEAD, 0))  # fmt: skip
    backlog = GaugeMetricFamily("atkproxy_backlog", "Jobs with work left", labels=["lane"])
    backlog.add_metric(["upstream"], _total(counts, UPSTREAM_STATES))
    backlog.add_metric(["delivery"], _total(counts, DELIVERY_STATES))
    yield backlog


def _total(counts: dict[JobState, int], states: Collection[JobState]) -> int:
    return sum(counts.get(state, 0) for state in states)


class Metrics:
    """The metrics of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "atkproxy_requests", "Requests to the backend by mode and status",
            ["mode", "status"], registry=r,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "atkproxy_upstream_seconds", "Upstream call latency", ["mode"],
            buckets=UPSTREAM_BUCKETS, registry=r,
        )  # fmt: skip
        self.upstream_retries = Counter(
            "atkproxy_upstream_retries", "Job calls that did not reach the upstream", registry=r
        )
        self.callback_attempts = Counter(
            "atkproxy_callback_attempts", "Callback attempts by outcome", ["outcome"], registry=r
        )
        self.store_seconds = Histogram(
            "atkproxy_store_seconds", "Job store operation latency", ["operation"],
            buckets=STORE_BUCKETS, registry=r,
        )  # fmt: skip
        self.scraped = ScrapeCollector()
        r.register(self.scraped)
        for outcome in OUTCOMES:  # every series exists from the start: rate() sees the first
            self.callback_attempts.labels(outcome)
        self._sync_upstream = self.upstream_seconds.labels("sync")
        self._async_upstream = self.upstream_seconds.labels("async")
        self._request_counts: dict[tuple[str, int], Counter] = {}

    def request(self, mode: str, status: int) -> None:
        """One request answered (children cached: the pass-through path pays one increment)."""
        child = self._request_counts.get((mode, status))
        if child is None:
            child = self._request_counts[(mode, status)] = self.requests.labels(mode, str(status))
        child.inc()

    def upstream_answered(self, started: float, *, job: bool = False) -> None:
        """An upstream call that began at `started` (time.perf_counter) has its answer."""
        (self._async_upstream if job else self._sync_upstream).observe(
            time.perf_counter() - started
        )

    def attempt(self, outcome: str) -> None:
        self.callback_attempts.labels(outcome).inc()

    def exposition(self, scrape: Scrape, accept: str = "") -> tuple[bytes, str]:
        """The body and its Content-Type, in the format `accept` asks for (the Prometheus
        text format 0.0.4 by default, else a later one or OpenMetrics), with `scrape`."""
        self.scraped.scrape = scrape
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class Timed:
    """Times a `with` block into a histogram. A class, not @contextmanager: a store
    operation is made about five times per job, and a generator's context manager costs
    several times this one."""

    __slots__ = ("_histogram", "_started")

    def __init__(self, histogram: Histogram) -> None:
        self._histogram = histogram
        self._started = time.perf_counter()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        self._histogram.observe(time.perf_counter() - self._started)


class MeasuredStore:
    """A JobStore that times each operation into atkproxy_store_seconds{operation}."""

    def __init__(self, inner: JobStore, metrics: Metrics) -> None:
        self.inner = inner
        self._seconds = {op: metrics.store_seconds.labels(op) for op in OPERATIONS}

    def _timed(self, operation: str) -> Timed:
        return Timed(self._seconds[operation])

    async def add(self, job: Job) -> Job:
        with self._timed("add"):
            return await self.inner.add(job)

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        with self._timed("claim"):
            return await self.inner.claim(owner, states, now, until, limit)

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        with self._timed("renew"):
            return await self.inner.renew(owner, job_ids, until)

    async def expire_leases(self) -> int:
        with self._timed("expire_leases"):
            return await self.inner.expire_leases()

    async def update(self, job: Job, owner: str | None) -> None:
        with self._timed("update"):
            await self.inner.update(job, owner)

    async def get(self, job_id: str) -> Job | None:
        with self._timed("get"):
            return await self.inner.get(job_id)

    async def result(self, job_id: str) -> UpstreamResult | None:
        with self._timed("result"):
            return await self.inner.result(job_id)

    async def page(
        self, state: JobState | None, limit: int, after: str | None
    ) -> tuple[list[Job], str | None]:
        with self._timed("page"):
            return await self.inner.page(state, limit, after)

    async def redeliver(
        self,
        now: float,
        *,
        job_id: str | None = None,
        state: JobState | None = None,
        limit: int = 1,
    ) -> int:
        with self._timed("redeliver"):
            return await self.inner.redeliver(now, job_id=job_id, state=state, limit=limit)

    async def purge(self, before: float, limit: int) -> int:
        with self._timed("purge"):
            return await self.inner.purge(before, limit)

    async def compact(self) -> None:
        with self._timed("compact"):
            await self.inner.compact()

    async def counts(self) -> dict[JobState, int]:
        with self._timed("counts"):
            return await self.inner.counts()

    async def ping(self) -> None:
        with self._timed("ping"):
            await self.inner.ping()

    async def close(self) -> None:
        with self._timed("close"):
            await self.inner.close()
