"""Background execution: a queue of jobs, a bounded number running at once, recovery, drain.

Every step is saved before the next begins, so a process that dies anywhere leaves each
job in a state that `recover` knows how to carry on from.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from .auth import CallbackAuth
from .callback import Deliverer
from .forward import Upstream, UpstreamUnavailable, failed_result
from .jobs import AtkStatus, Job, JobState, UpstreamResult
from .settings import Settings
from .status import Probe, derive
from .store import JobStore

log = structlog.get_logger("atkproxy.runner")

INTERRUPTED = "interrupted: the proxy stopped while the upstream call was running"
# about a minute in all, then the job is left to the next start's recovery
SAVE_RETRY_DELAYS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0)
PROBE_HEADERS_DROPPED = frozenset({"content-type", "content-length", "content-encoding"})


class Runner:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        upstream: Upstream,
        deliverer: Deliverer,
        auth: CallbackAuth,
    ) -> None:
        self._settings = settings
        self._store = store
        self._upstream = upstream
        self._deliverer = deliverer
        self._auth = auth
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._slots = asyncio.Semaphore(settings.async_.max_inflight)
        self._busy: set[asyncio.Task[None]] = set()
        self._reserved = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- intake ---------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Jobs accepted, or being accepted, and not yet started."""
        return self._queue.qsize() + self._reserved

    def reserve(self) -> bool:
        """Hold a place in the queue for a job being accepted; False when it is full."""
        if self.backlog >= self._settings.async_.max_queue:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        """The job a place was held for was not accepted after all."""
        self._reserved -= 1

    def submit(self, job: Job, *, reserved: bool = False) -> None:
        if reserved:
            self._reserved -= 1
        self._queue.put_nowait(job)

    # -- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        await self.recover()
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="atkproxy-dispatch"),
            asyncio.create_task(self._housekeeping(), name="atkproxy-housekeeping"),
        ]

    async def drain(self, grace: float) -> None:
        """Take no more work, give running jobs `grace` seconds, then cancel the rest.

        A cancelled job stays `running` in the store and is settled by `recover` at the
        next start; queued jobs stay `accepted` and run then.
        """
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._busy:
            _, pending = await asyncio.wait(self._busy, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _dispatch(self) -> None:
        while True:
            # a slot first: a job taken off the queue starts at once, so the queue's
            # length is exactly the number of jobs waiting
            await self._slots.acquire()
            job = await self._queue.get()
            task = asyncio.create_task(self._guarded(job), name=f"atkproxy-job-{job.id}")
            self._busy.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._busy.discard(task)
        self._slots.release()

    async def _housekeeping(self) -> None:
        retention = self._settings.store.retention
        while True:
            try:
                purged = await self._store.purge(time.time() - retention)
            except Exception:
                log.exception("purging old jobs failed; trying again later")
            else:
                if purged:
                    log.info("purged old jobs", count=purged)
            await asyncio.sleep(min(retention / 10, 300.0))

    # -- one job --------------------------------------------------------------------

    async def _guarded(self, job: Job) -> None:
        with structlog.contextvars.bound_contextvars(job=job.id, instance=job.instance_id):
            try:
                await self.process(job)
            except Exception:
                # The job keeps its last saved state and is picked up again by recover.
                log.exception("job step failed", state=job.state.value)

    async def process(self, job: Job) -> None:
        if job.state is JobState.ACCEPTED:
            job = await self.execute(job)
        if job.state is JobState.DELIVERING:
            await self.deliver(job)

    async def execute(self, job: Job) -> Job:
        job = job.to(JobState.RUNNING)
        await self._save(job)
        result = await self._upstream.call(job.request, self._settings.async_.max_result)
        return await self.finish(job, result, await self._derive(job, result))

    async def finish(self, job: Job, result: UpstreamResult, status: AtkStatus) -> Job:
        job = job.to(JobState.FINISHED, result=result, status=status, reason=result.error)
        if self.owes_callback(job):
            job = job.to(JobState.DELIVERING)
        await self._save(job)
        log.info(
            "job finished",
            status=status.value,
            upstream_status=result.status,
            error=result.error,
            callback=job.state is JobState.DELIVERING,
        )
        return job

    def owes_callback(self, job: Job) -> bool:
        assert job.result is not None
        skipped = job.result.status in self._settings.callback.no_callback_statuses
        return job.wants_callback and not skipped

    async def deliver(self, job: Job) -> Job:
        attempt = await self._deliverer.deliver(job)
        state = JobState.DELIVERED if attempt.ok else JobState.DEAD
        job = job.to(state, attempts=(*job.attempts, attempt))
        await self._save(job)
        log.info(
            "callback delivered" if attempt.ok else "callback failed",
            attempt=len(job.attempts),
            receiver_status=attempt.status,
            error=attempt.error,
        )
        self._auth.forget(job.id)
        return job

    async def _save(self, job: Job) -> None:
        """Save, riding out a short store outage (a lock held elsewhere, a full disk freed)."""
        for delay in SAVE_RETRY_DELAYS:
            try:
                return await self._store.save(job)
            except Exception as exc:
                log.warning(
                    "saving the job failed; retrying",
                    state=job.state.value,
                    error=exc.__class__.__name__,
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
        await self._store.save(job)  # the last try raises; recover() carries on after a restart

    async def _derive(self, job: Job, result: UpstreamResult) -> AtkStatus:
        fields = {**job.path_params, "id": job.instance_id}
        outcome = derive(self._settings.status.rules, job.request.method, result, fields)
        if isinstance(outcome, Probe):
            headers = [
                (k, v) for k, v in job.request.headers if k.lower() not in PROBE_HEADERS_DROPPED
            ]
            answer = await self._upstream.get_status(outcome.path, headers)
            if answer not in outcome.mapping:
                log.warning(
                    "status probe not understood; status from the upstream's answer",
                    probe=outcome.path,
                    probe_status=answer,
                    status=outcome.fallback.value,
                )
            return outcome.outcome(answer)
        return outcome

    # -- after a restart ------------------------------------------------------------

    async def recover(self) -> None:
        """Carry on with what a previous process left: nothing accepted is dropped."""
        states = (JobState.ACCEPTED, JobState.RUNNING, JobState.DELIVERING)
        jobs = await self._store.in_states(states)
        for job in jobs:
            self.submit(await self._settle(job))
        if jobs:
            log.info("recovered jobs", count=len(jobs))

    async def _settle(self, job: Job) -> Job:
        if job.state is not JobState.RUNNING:
            return job
        if job.replay_safe:
            job = job.to(JobState.ACCEPTED)
            await self._save(job)
            return job
        result = failed_result(UpstreamUnavailable(INTERRUPTED))
        return await self.finish(job, result, AtkStatus.FAILED)
