"""Admission: how many async requests may wait for the upstream, and which may start at once.

A place is held for a request while it is being accepted and released, whatever happens,
when the `async with` ends. A request accepted while an upstream slot is free takes the
slot and starts at once (`Place.slot`); the others wait in the store until the engine
claims them. `async.max_queue` bounds the waiting ones, as this process counts them (with a
store shared by replicas, the engine sets the count from the store's backlog at every poll).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from .errors import Rejected

log = structlog.get_logger("atkproxy.admission")


@dataclass(slots=True)
class Place:
    slot: bool  # an upstream slot is held for this job: it starts at once
    taken: bool = False  # the job was accepted: the place became a waiting job or a run


class Slots:
    """A count of free slots that a claim loop and the accept path share (no waiting)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size

    def take(self, wanted: int = 1) -> int:
        got = min(wanted, self.free)
        self.free -= got
        return got

    def give(self, count: int = 1) -> None:
        self.free = min(self.size, self.free + count)

    @property
    def busy(self) -> int:
        return self.size - self.free


class Admission:
    def __init__(self, max_queue: int, retry_after: int, slots: Slots) -> None:
        self._max_queue = max_queue
        self._retry_after = retry_after
        self._slots = slots
        self.waiting = 0  # accepted here (or found at start) and not yet claimed
        self._entering = 0  # places held by requests being accepted
        self._shed = Shedding()

    @asynccontextmanager
    async def place(self) -> AsyncIterator[Place]:
        """A place for one request, or Rejected(503) when the queue is full."""
        slot = self._slots.take() == 1
        if not slot and self.waiting + self._entering >= self._max_queue:
            self._shed.note()
            raise Rejected(503, "too many jobs waiting; retry later", self._retry_after, True)
        self._entering += 1
        place = Place(slot)
        try:
            yield place
        finally:
            self._entering -= 1
            if not place.taken and place.slot:
                self._slots.give()
            elif place.taken and not place.slot:
                self.waiting += 1

    def claimed(self, count: int) -> None:
        """The engine took `count` waiting jobs."""
        self.waiting = max(0, self.waiting - count)


class Shedding:
    """Counts requests refused for a full queue; logs them at most once per interval.

    Under a flood a line per refusal would cost more than the refusal itself.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self._interval = interval
        self._refused = 0
        self._logged_at: float | None = None

    def note(self) -> None:
        self._refused += 1
        now = time.monotonic()
        if self._logged_at is None or now - self._logged_at >= self._interval:
            log.warning(
                "shedding load: the job queue is full",
                refused=self._refused,
                per_seconds=self._interval,
            )
            self._refused, self._logged_at = 0, now
