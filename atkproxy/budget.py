"""A byte budget for the upstream answers jobs hold in memory (`async.max_answer_memory`).

A job reads its upstream answer whole and holds it (once) until the job is done with it in
this process: its result is recorded and its first callback sent, in the same task. So the
memory a worker needs grows with the answers it holds at once: up to `async.max_inflight`
times `async.max_result` under load (16 x 10 MiB). The budget bounds that sum by
configuration instead:

- An answer with a Content-Length reserves its size before its body is read. While it
  waits, its upstream connection is simply not read (the client pauses reading after a few
  hundred KiB: TCP backpressure on the upstream), so what waits costs little memory.
- An answer without one (chunked, or delimited by the close) is counted as it arrives,
  without waiting: it may take the budget past its limit by its own size (soft), and the
  answers after it wait until it is released.
- Waiters are served first come, first served: a large answer is never passed over
  forever by smaller ones. An answer larger than the whole budget proceeds alone, once
  nothing else is held, so it never waits for ever.
- The reservations of a job are released when its task ends (`holding_answers`, entered by
  the engine around each job task); a read that fails releases its own at once.

The job task's reservations travel in a context variable: `read_limited` reserves through
it, and where no job task set one (pass-through, status probes, tests) nothing is counted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Budget:
    """Bytes held at once, bounded by `limit` (0: no bound, only counted)."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError("a budget must not be negative")
        self.limit = limit
        self.held = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _fits(self, size: int) -> bool:
        # nothing held: anything fits, an oversize reservation too (it runs alone)
        return not self.limit or not self.held or self.held + size <= self.limit

    async def reserve(self, size: int) -> Reservation:
        """`size` bytes, once they fit and every earlier waiter has been served."""
        if not self._waiters and self._fits(size):
            return self.take(size)
        waiter = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        self._waiters.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._give(size)  # granted as it was cancelled: nobody will hold it
            else:
                if entry in self._waiters:  # else _grant dropped it already
                    self._waiters.remove(entry)
                self._grant()  # it may have been the head that kept the others waiting
            raise
        return Reservation(self, size)

    def take(self, size: int) -> Reservation:
        """`size` bytes now, whatever is held: what arrives without a length."""
        self.held += size
        return Reservation(self, size)

    def _give(self, size: int) -> None:
        self.held -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            size, waiter = self._waiters[0]
            if waiter.done():  # cancelled, and its task has not run yet to say so
                self._waiters.popleft()
                continue
            if not self._fits(size):
                return
            self._waiters.popleft()
            self.held += size
            waiter.set_result(None)


class Reservation:
    """Bytes taken from a budget (none when `budget` is None); released once."""

    __slots__ = ("_budget", "size")

    def __init__(self, budget: Budget | None, size: int) -> None:
        self._budget = budget
        self.size = size

    @property
    def active(self) -> bool:
        return self._budget is not None

    def extend(self, size: int) -> None:
        """`size` more bytes, without waiting (an answer without a length growing)."""
        if self._budget is not None:
            self._budget.held += size
            self.size += size

    def shrink_to(self, size: int) -> None:
        """Keep only `size` bytes (an answer shorter than its Content-Length)."""
        if self._budget is not None and size < self.size:
            self._budget._give(self.size - size)
            self.size = size

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._give(self.size)


NOTHING = Reservation(None, 0)


class JobAnswers:
    """The reservations of one job task."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self._held: list[Reservation] = []

    async def reserve(self, size: int, wait: bool = True) -> Reservation:
        # a job that already holds an answer would wait for itself: it takes what it needs
        if not wait or any(r.active for r in self._held):
            reservation = self.budget.take(size)
        else:
            reservation = await self.budget.reserve(size)
        self._held.append(reservation)
        return reservation

    def release(self) -> None:
        for reservation in self._held:
            reservation.release()
        self._held.clear()


_JOB_ANSWERS: ContextVar[JobAnswers | None] = ContextVar("atkproxy_job_answers", default=None)


@contextmanager
def holding_answers(budget: Budget, already: int = 0) -> Iterator[JobAnswers]:
    """Around a job task: the answers it reads are reserved from `budget`, and released when
    it ends. `already`: the bytes of an answer the job came with (loaded from the store with
    it, for a callback retry say), counted without waiting."""
    answers = JobAnswers(budget)
    if already:
        answers._held.append(budget.take(already))
    token = _JOB_ANSWERS.set(answers)
    try:
        yield answers
    finally:
        _JOB_ANSWERS.reset(token)
        answers.release()


async def reserve_answer(size: int, wait: bool = True) -> Reservation:
    """Reserve `size` bytes for the answer the current job task reads, waiting until they
    fit (unless not `wait`); outside a job task, nothing."""
    answers = _JOB_ANSWERS.get()
    if answers is None:
        return NOTHING
    return await answers.reserve(size, wait)
