"""The steps of one job, each saved before the next begins.

    accepted   -> execute: saved `running`, the upstream call, then conclude
    running    -> (found after its holder died) conclude a recorded result, else re-run
                  when the route is replay_safe, else Failed "interrupted"
    conclude   -> the status from the rules (asking a probe until it answers), then finish:
                  `finished`, or `delivering` when a callback is owed
    delivering -> one callback attempt, recorded before it is sent; then delivered, dead,
                  or due again on the retry schedule

The job is held under a lease while a step runs; every save renews it. A step that cannot
save (the store is failing) keeps trying with backoff while the job is still this
worker's; once the store says another worker has it (LeaseLost), the step lets go.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from .auth import CallbackAuth
from .callback import Deliverer
from .http1 import Http1Upstream
from .jobs import AtkStatus, Attempt, Job, JobState, UpstreamResult, release, result_fields
from .metrics import Metrics
from .retry import delivery_stops, first_delivery_at, next_delivery_at, upstream_retry_at
from .settings import Settings
from .status import Probe, ask_until_answered, derive
from .store import JobMissing, JobStore, LeaseLost
from .upstream import UpstreamUnavailable, failed_result

log = structlog.get_logger("atkproxy.steps")

INTERRUPTED = "interrupted: the proxy stopped while the upstream call was running"
ATTEMPT_INTERRUPTED = "interrupted: the proxy stopped during this attempt"
SAVE_RETRY_DELAYS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)  # the last repeats
PROBE_HEADERS_DROPPED = frozenset({"content-type", "content-length", "content-encoding"})


class LetGo(Exception):
    """The step cannot go on with this job: another worker has it, or this one is stopping.
    The job stays as last saved, and the store offers it again when its lease expires."""


@dataclass(slots=True)
class Worker:
    """Who holds jobs, for how long, and whether it is stopping."""

    owner: str
    lease: float
    stopping: asyncio.Event
    # a job whose upstream step is over asks for a delivery slot: True when it may go on
    # to its callback at once, in the same task and under the same lease (the engine moves
    # it from the upstream lane to the delivery lane)
    to_delivery: Callable[[str], bool] = field(default=lambda _job_id: False)


class Steps:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        upstream: Http1Upstream,
        deliverer: Deliverer,
        auth: CallbackAuth,
        worker: Worker,
        metrics: Metrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._upstream = upstream
        self._deliverer = deliverer
        self._auth = auth
        self._worker = worker
        self._metrics = metrics or Metrics()

    async def run(self, job: Job) -> Job:
        """Carry a claimed (or just accepted) job as far as it goes now."""
        if job.state is JobState.ACCEPTED:
            return await self.execute(job)
        if job.state is JobState.RUNNING:
            return await self.resume(job)
        if job.state is JobState.DELIVERING:
            return await self.deliver(job)
        return job  # nothing left to do (a redelivery raced with a purge, say)

    # -- the upstream call --------------------------------------------------------------

    async def execute(self, job: Job) -> Job:
        request = job.request
        assert request is not None  # a claimed job comes with its bodies
        job = await self.save(job.to(JobState.RUNNING, due_at=time.time()))
        started = time.perf_counter()
        result = await self._upstream.call(request, self._settings.async_.max_result)
        if result.error is None:  # as for pass-through: calls that got an answer
            self._metrics.upstream_answered(started, job=True)
        if result.not_sent:
            return await self.call_later(job, result)
        return await self.conclude(job, result)

    async def call_later(self, job: Job, result: UpstreamResult) -> Job:
        """The request never reached the upstream: due again on the retry schedule."""
        now = time.time()
        again = upstream_retry_at(self._settings.upstream.retry, job.tries, now)
        if again is None:
            return await self.finish(job, result, AtkStatus.FAILED, result.error)
        log.info(
            "upstream not reached; calling again later", tries=job.tries + 1, error=result.error
        )
        self._metrics.upstream_retries.inc()
        tries, reason = job.tries + 1, result.error
        return await self.save(
            job.to(JobState.ACCEPTED, tries=tries, reason=reason, **release(again))
        )

    async def resume(self, job: Job) -> Job:
        """A `running` job whose holder stopped: settled by what it left."""
        if job.result is not None:  # the call answered; the status was being probed
            return await self.conclude(job, job.result)
        if job.replay_safe:
            log.info("re-running an interrupted job (replay_safe route)")
            return await self.execute(job.to(JobState.ACCEPTED))
        result = failed_result(UpstreamUnavailable(INTERRUPTED))
        return await self.finish(job, result, AtkStatus.FAILED, INTERRUPTED)

    # -- the status ---------------------------------------------------------------------

    async def conclude(self, job: Job, result: UpstreamResult) -> Job:
        fields = {**job.path_params, "id": job.instance_id}
        outcome = derive(self._settings.status.rules, job.method, result, fields)
        if not isinstance(outcome, Probe):
            return await self.finish(job, result, outcome, result.error)
        # the result is kept before probing, so a crash meanwhile does not lose it
        job = await self.save(job.with_result(result))
        status, reason = await ask_until_answered(
            outcome, lambda path: self._probe(job, path), self._settings.status.probe_max_age
        )
        if reason is not None:
            log.warning("status probe unanswered; status from the upstream's answer",
                        probe=outcome.path, status=status.value)  # fmt: skip
        return await self.finish(job, result, status, reason or result.error)

    async def _probe(self, job: Job, path: str) -> int | None:
        assert job.request is not None
        dropped = PROBE_HEADERS_DROPPED
        headers = [(k, v) for k, v in job.request.headers if k.lower() not in dropped]
        return await self._upstream.get_status(path, headers)

    async def finish(
        self, job: Job, result: UpstreamResult, status: AtkStatus, reason: str | None
    ) -> Job:
        # each step is one copy of the job where it can be (a copy per field change adds up)
        done = {"status": status, "reason": reason, **result_fields(result)}
        owed = (
            job.wants_callback and result.status not in self._settings.callback.no_callback_statuses
        )
        if owed:
            job = job.to(JobState.FINISHED, **done)
            due = first_delivery_at(self._settings.callback.retry, time.time())
            if due <= time.time() and self._worker.to_delivery(job.id):
                return await self._deliver_now(job, due, status, reason)
            job = job.to(JobState.DELIVERING, **release(due))
        else:
            job = job.to(JobState.FINISHED, **done, **release(None))
            self._auth.forget(job.id)
        job = await self.save(job)
        log.info("job finished", status=status.value, upstream_status=result.status,
                 reason=reason, callback=owed)  # fmt: skip
        return job

    async def _deliver_now(
        self, job: Job, due: float, status: AtkStatus, reason: str | None
    ) -> Job:
        """The finish save keeps the lease and records the first attempt as pending: one
        write instead of three (finished, claimed, attempt pending), and no wait for a claim.
        A crash after it is a crash during that attempt: the next one has the next number."""
        job = await self.save(job.to(JobState.DELIVERING, due_at=due, attempts=_pending(job)))
        log.info("job finished", status=status.value, upstream_status=job.upstream_status,
                 reason=reason, callback=True)  # fmt: skip
        return await self._attempt(job)

    # -- the callback -------------------------------------------------------------------

    async def deliver(self, job: Job) -> Job:
        if job.attempts and job.attempts[-1].pending:  # its holder died mid-attempt
            return await self.after_attempt(job, _interrupted(job.attempts[-1]))
        # recorded before it is sent: after a crash, the next attempt has the next number
        return await self._attempt(await self.save(job.changed(attempts=_pending(job))))

    async def _attempt(self, job: Job) -> Job:
        """Send the attempt the job records as pending, its last."""
        number = len(job.attempts)
        return await self.after_attempt(job, await self._deliverer.deliver(job, number))

    async def after_attempt(self, job: Job, attempt: Attempt) -> Job:
        attempts = (*job.attempts[:-1], attempt)
        number = len(attempts)
        if attempt.ok:
            job = job.to(JobState.DELIVERED, attempts=attempts, **release(None))
        else:
            job = self._after_failure(job.changed(attempts=attempts), attempt)
        job = await self.save(job)
        self._metrics.attempt(_outcome(job, attempt, self._settings))
        log.info("callback delivered" if attempt.ok else "callback attempt failed",
                 attempt=number, receiver_status=attempt.status, error=attempt.error,
                 state=job.state.value)  # fmt: skip
        if job.due_at is None:
            self._auth.forget(job.id)
        return job

    def _after_failure(self, job: Job, attempt: Attempt) -> Job:
        """Due again on the retry schedule, or dead. The reason stays the job's (why it
        Failed, say) until it is dead: an attempt's failure is its own."""
        if (due := self._next_attempt(job, attempt)) is not None:
            return job.to(JobState.DELIVERING, **release(due))
        return job.to(JobState.DEAD, reason=self._dead_reason(job, attempt), **release(None))

    def _next_attempt(self, job: Job, attempt: Attempt) -> float | None:
        policy = self._settings.callback.retry
        if delivery_stops(attempt, policy):
            return None
        return next_delivery_at(job, policy, time.time())

    def _dead_reason(self, job: Job, attempt: Attempt) -> str:
        if delivery_stops(attempt, self._settings.callback.retry):
            return f"{_failure(attempt)}: delivery stopped"
        return f"callback retries exhausted after {len(job.delivery_attempts)} attempts: " + (
            _failure(attempt)
        )

    # -- saving -------------------------------------------------------------------------

    async def save(self, job: Job) -> Job:
        """Write the job, renewing its lease when it stays held; retried with backoff while
        the store fails. Raises LetGo when the job is no longer this worker's."""
        worker = self._worker
        if job.lease_owner is not None:
            job = job.leased(worker.owner, time.time() + worker.lease)
        for n in range(1_000_000):
            try:
                await self._store.update(job, worker.owner)
                return job
            except (LeaseLost, JobMissing) as exc:
                raise LetGo(f"{exc.__class__.__name__}: another worker has the job") from exc
            except Exception as exc:
                await self._wait_to_save_again(job, exc, n)
        raise LetGo("the store kept failing")  # pragma: no cover - a million failed saves

    async def _wait_to_save_again(self, job: Job, exc: Exception, n: int) -> None:
        delay = SAVE_RETRY_DELAYS[min(n, len(SAVE_RETRY_DELAYS) - 1)]
        if n in (0, len(SAVE_RETRY_DELAYS)) or n % 60 == 0:  # a line now and then, not a flood
            log.warning("saving the job failed; retrying", state=job.state.value,
                        error=exc.__class__.__name__, retry_in=delay, failures=n + 1)  # fmt: skip
        try:
            async with asyncio.timeout(delay):
                await self._worker.stopping.wait()
        except TimeoutError:
            return
        raise LetGo("stopping; the job stays as last saved") from exc


def _outcome(job: Job, attempt: Attempt, settings: Settings) -> str:
    """How an attempt ended, for atkproxy_callback_attempts_total{outcome}."""
    if job.state is not JobState.DEAD:
        return "delivered" if attempt.ok else "retry"
    return "stopped" if delivery_stops(attempt, settings.callback.retry) else "dead"


def _pending(job: Job) -> tuple[Attempt, ...]:
    """The job's attempts and a pending one."""
    return (*job.attempts, Attempt(time.time(), None, None, 0.0))


def _interrupted(pending: Attempt) -> Attempt:
    return Attempt(pending.at, None, ATTEMPT_INTERRUPTED, 0.0)


def _failure(attempt: Attempt) -> str:
    if attempt.error is not None:
        return attempt.error
    return f"the receiver answered {attempt.status}"
