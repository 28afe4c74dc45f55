"""The engine: the life cycle of background work (start, claim, renew, drain, housekeeping).

The store is the schedule. Two lanes claim due jobs from it under a lease: upstream calls
(`async.max_inflight` at once) and callback deliveries (`callback.max_inflight`), so a slow
receiver never holds up the backend. A claim happens when a slot frees, when this process
accepts or re-drives a job (a wake-up), and every `store.poll` seconds (jobs whose retry
came due, or whose holder died). Leases are renewed while jobs run; memory holds what
runs, not what waits (besides at most a lane's worth of upstream jobs claimed ahead, so a
freed slot starts the next job without a store round trip). A job whose upstream step ends
goes on to its callback in the same task when a delivery slot is free (Worker.to_delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Collection

import structlog

from .admission import Admission, Slots
from .budget import Budget, holding_answers
from .jobs import DELIVERY_STATES, UPSTREAM_STATES, AtkStatus, Job, JobState
from .settings import Settings
from .steps import LetGo, Steps, Worker
from .store import JobStore
from .tracing import trace_fields
from .upstream import UpstreamUnavailable, failed_result

log = structlog.get_logger("atkproxy.engine")

PURGE_BATCH = 500  # rows per purge transaction: an accept never waits long behind one
CLAIM_ERROR_DELAY = 1.0
RENEW_ERROR_DELAY = 0.25  # renewals are tried again this soon after a failure


def new_owner() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Lane:
    """Jobs of some states, and the slots that bound how many of them run at once."""

    def __init__(self, name: str, states: Collection[JobState], slots: Slots) -> None:
        self.name = name
        self.states = states
        self.slots = slots
        # jobs of this lane running here (metrics): `slots.busy` also counts the slots that
        # requests being accepted hold before their job starts
        self.running = 0


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        make_steps: Callable[[Worker], Steps],
        *,
        shared_store: bool = False,
    ) -> None:
        self._settings = settings
        self._store = store
        self._shared = shared_store
        self.worker = Worker(new_owner(), settings.store.lease, asyncio.Event(), self._to_delivery)
        self._steps = make_steps(self.worker)
        self.upstream = Lane("upstream", UPSTREAM_STATES, Slots(settings.async_.max_inflight))
        self.delivery = Lane("delivery", DELIVERY_STATES, Slots(settings.callback.max_inflight))
        a = settings.async_
        self.admission = Admission(a.max_queue, a.retry_after, self.upstream.slots)
        self.answers = Budget(a.max_answer_memory)  # upstream answer bytes jobs hold here
        self._held: dict[str, asyncio.Task[None]] = {}
        self._lanes: dict[str, Lane] = {}  # the lane whose slot each held job takes
        # upstream jobs claimed ahead (leased, at most a lane's worth): when an upstream slot
        # frees, the next job starts at once instead of after a claim, a store round trip
        self._ready: deque[Job] = deque()
        # claimed again while still held here (the step was finishing): handed back to the
        # store when the step ends, so the next claim takes the job as the store has it now
        self._claimed_while_held: set[str] = set()
        self._hand_back: set[str] = set()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._counted_at = -float("inf")

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if not self._shared:  # the only process of an embedded store: leases found are stale
            await self._store.expire_leases()
        counts = await self._store.counts()
        self.admission.waiting = counts[JobState.ACCEPTED]
        unfinished = sum(counts[s] for s in (*UPSTREAM_STATES, *DELIVERY_STATES))
        if unfinished:
            log.info("carrying on with jobs found in the store", count=unfinished)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name="atkproxy-claim"),
            asyncio.create_task(self._renew_loop(), name="atkproxy-renew"),
            asyncio.create_task(self._housekeeping(), name="atkproxy-housekeeping"),
        ]

    async def drain(self, grace: float) -> None:
        """Take no more work, give running jobs `grace` seconds, then stop the rest: they stay
        in the store as last saved, and their leases are ended so that another process (or
        the next start) carries them on."""
        self.worker.stopping.set()
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        running = list(self._held.values())
        if running:
            await asyncio.wait(running, timeout=grace)
        left = [*self._held, *(job.id for job in self._ready)]
        self._ready.clear()
        for task in list(self._held.values()):
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        if left:
            with contextlib.suppress(Exception):
                await self._store.renew(self.worker.owner, left, time.time())
        log.info("engine stopped", jobs_left_in_store=len(left))

    def wake(self) -> None:
        self._wake.set()

    async def until_idle(self) -> None:
        """Return once nothing runs and nothing is due (like arq's burst mode): for tests."""
        self._idle.clear()
        self.wake()
        await self._idle.wait()

    # -- running jobs -------------------------------------------------------------------

    def run_now(self, job: Job) -> None:
        """Run a job accepted with an upstream slot held for it (admission's Place.slot)."""
        self._start(job, self.upstream)

    def _start(self, job: Job, lane: Lane) -> None:
        task = asyncio.create_task(self._guarded(job), name=f"atkproxy-job-{job.id}")
        self._held[job.id] = task
        self._lanes[job.id] = lane
        lane.running += 1
        self._idle.clear()

        def done(_: asyncio.Task[None]) -> None:
            self._held.pop(job.id, None)
            now_in = self._lanes.pop(job.id, lane)  # the delivery lane, if it went on there
            now_in.running -= 1
            now_in.slots.give()
            self._start_ready()
            if job.id in self._claimed_while_held:
                self._claimed_while_held.discard(job.id)
                self._hand_back.add(job.id)
            self.wake()

        task.add_done_callback(done)

    def _to_delivery(self, job_id: str) -> bool:
        """A held job's upstream step is over and its callback is due: when a delivery slot
        is free it goes on in the same task, and its upstream slot is given to the next job."""
        if self.worker.stopping.is_set() or self._lanes.get(job_id) is not self.upstream:
            return False
        if self.delivery.slots.take() != 1:
            return False
        self.upstream.slots.give()
        self.upstream.running -= 1
        self.delivery.running += 1
        self._lanes[job_id] = self.delivery
        self._start_ready()
        self.wake()
        return True

    def _start_ready(self) -> None:
        """Start jobs claimed ahead while upstream slots are free."""
        while self._ready and not self.worker.stopping.is_set() and self.upstream.slots.take():
            job = self._ready.popleft()
            self.admission.claimed(job.state is JobState.ACCEPTED)
            self._start(job, self.upstream)

    async def _guarded(self, job: Job) -> None:
        bound = {"job": job.id, "instance": job.instance_id, **trace_fields(job.trace)}
        already = len(job.result.body) if job.result is not None else 0  # loaded with the job
        # bind and reset, not bound_contextvars: a generator context manager per job costs
        # more, and this task's context is its own anyway
        tokens = structlog.contextvars.bind_contextvars(**bound)
        try:
            with holding_answers(self.answers, already):  # released when the job task ends
                await self._steps.run(job)
        except LetGo as exc:
            log.info("letting the job go", reason=str(exc))
        except Exception as exc:
            log.exception("job step failed", state=job.state.value)
            await self._give_up(job, exc)
        finally:
            structlog.contextvars.reset_contextvars(**tokens)

    async def _give_up(self, job: Job, exc: Exception) -> None:
        """A step failed in a way nobody planned for: end the job with the reason, never
        leave it stuck (a bug would otherwise repeat at every claim). A job that had not
        finished finishes Failed, and its callback says so, as for an upstream that failed."""
        reason = f"internal error: {exc.__class__.__name__}"
        with contextlib.suppress(Exception):
            if job.state in UPSTREAM_STATES:
                running = job.to(JobState.RUNNING) if job.state is JobState.ACCEPTED else job
                failed = failed_result(UpstreamUnavailable(reason))
                try:
                    await self._steps.finish(running, failed, AtkStatus.FAILED, reason)
                    return
                except LetGo:
                    return
                except Exception:
                    ended = running.to(JobState.FINISHED, status=AtkStatus.FAILED, reason=reason)
            else:
                ended = job.to(JobState.DEAD, reason=reason)
            await self._steps.save(ended.released(None))

    # -- the loops ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.worker.stopping.is_set():
            self._wake.clear()
            self._start_ready()  # a slot an accept gave back unused, say
            try:
                await self._hand_back_leases()
                await self._count_waiting()
                claimed = await self._claim(self.upstream) + await self._claim(self.delivery)
            except Exception as exc:
                log.warning("claiming due jobs failed; trying again", error=exc.__class__.__name__)
                await self._after_store_failure()
                continue
            if claimed:
                continue
            if not self._held and not self._ready:
                self._idle.set()
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings.store.poll):
                    await self._wake.wait()

    async def _after_store_failure(self) -> None:
        """Wait for the store to answer again. A shared store's leases ran out meanwhile with
        nobody able to renew them, so claim only once their holders (who retry renewals every
        RENEW_ERROR_DELAY) have had time to renew: else a replica would take over jobs whose
        holders are alive, and a call that was answered would end `interrupted`."""
        while True:
            await asyncio.sleep(CLAIM_ERROR_DELAY)
            try:
                await self._store.ping()
                break
            except Exception:
                continue
        if self._shared:
            await asyncio.sleep(CLAIM_ERROR_DELAY)

    async def _claim(self, lane: Lane) -> int:
        # claimed ahead: upstream jobs that start the moment a slot frees (no store round trip)
        ahead = max(0, lane.slots.size - len(self._ready)) if lane is self.upstream else 0
        wanted = lane.slots.free + ahead  # slots not taken meanwhile: an accept may start at once
        if not wanted:
            return 0
        now = time.time()
        owner = self.worker.owner
        jobs = await self._store.claim(owner, lane.states, now, now + self.worker.lease, wanted)
        fresh = {job.id for job in jobs}
        if self._ready and any(job.id in fresh for job in self._ready):
            # claimed again (its lease had lapsed): the copy just claimed is the one to run
            self._ready = deque(job for job in self._ready if job.id not in fresh)
        for job in jobs:
            if job.id in self._held:
                self._claimed_while_held.add(job.id)
            elif lane.slots.take() == 1:
                self._start(job, lane)
            elif lane is self.upstream:
                self._ready.append(job)
                continue  # still waiting, as admission counts: claimed when it starts
            else:  # the slot went to another job meanwhile: the store offers it again
                self._hand_back.add(job.id)
            self.admission.claimed(job.state is JobState.ACCEPTED)
        return len(jobs)

    async def _count_waiting(self) -> None:
        """With a shared store, other replicas claim the jobs this one accepted (and this one
        theirs), so counting its own accepts and claims would drift (up to a full queue and
        503s while the store has nothing waiting): the backlog admission bounds is the
        store's, counted again at most once per poll."""
        now = time.monotonic()
        if not self._shared or now - self._counted_at < self._settings.store.poll:
            return
        self._counted_at = now
        self.admission.waiting = (await self._store.counts())[JobState.ACCEPTED]

    async def _hand_back_leases(self) -> None:
        if self._hand_back:
            ids, self._hand_back = list(self._hand_back), set()
            await self._store.renew(self.worker.owner, ids, time.time())

    async def _renew_loop(self) -> None:
        every = self.worker.lease / 3
        delay = every
        while True:
            await asyncio.sleep(delay)
            renewed = await self._renew_held(warn=delay == every)
            # after a failure soon again: when the store is back, renew before others claim
            delay = every if renewed else min(every, RENEW_ERROR_DELAY)

    async def _renew_held(self, warn: bool) -> bool:
        """Renew the leases of the jobs held here (running or claimed ahead); let go of those
        another worker took over. False when the store failed (logged when `warn`: once per
        failing spell)."""
        held = [*self._held, *(job.id for job in self._ready)]
        if not held:
            return True
        try:
            kept = await self._store.renew(self.worker.owner, held, time.time() + self.worker.lease)
        except Exception as exc:
            if warn:
                log.warning("renewing leases failed", error=exc.__class__.__name__)
            return False
        lost = set(held) - kept  # another worker took it over
        gone = [job for job in self._ready if job.id in lost]
        self._ready = deque(job for job in self._ready if job.id not in lost)
        self.admission.claimed(sum(job.state is JobState.ACCEPTED for job in gone))
        for job_id in lost:
            task = self._held.get(job_id)
            if task is not None:
                log.warning("lease lost; stopping work on the job", job=job_id)
                task.cancel()
        return True

    async def _housekeeping(self) -> None:
        retention = self._settings.store.retention
        while True:
            await self.purge(time.time() - retention)
            await asyncio.sleep(min(retention / 10, 300.0))

    async def purge(self, before: float, pause: Callable[[], Awaitable[None]] | None = None) -> int:
        """Drop old finished jobs in small batches (accepts go on between them), then give
        the space back. Returns how many were dropped."""
        total = 0
        try:
            while (count := await self._store.purge(before, PURGE_BATCH)) > 0:
                total += count
                await (pause() if pause else asyncio.sleep(0))
                if count < PURGE_BATCH:
                    break
            if total:
                await self._store.compact()
                log.info("purged old jobs", count=total)
        except Exception:
            log.exception("purging old jobs failed; trying again later", purged=total)
        return total
