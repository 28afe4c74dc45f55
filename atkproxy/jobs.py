"""Jobs: what an async request becomes, and the transitions it goes through (pure).

    accepted -> running -> finished                   (no callback owed: ends here)
       ^          |    \\-> delivering -> delivered
       |          |              |   \\-> dead -> (redeliver) -> delivering
       \\----------/ (upstream not reached: retried later)

A job is recorded in the store before the 202 leaves. The store is also the schedule:
every job that still has work carries `due_at`; a worker holds a job under a lease
(`lease_owner` until `lease_until`) while it works on it and hands it back with its next
state and due time. A job whose holder died is offered again once the lease expires.

A job read for its status carries no bodies (`request` and `result` are None); a job
claimed for work carries both. `upstream_status`/`upstream_error` are always there.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class JobState(enum.StrEnum):
    ACCEPTED = "accepted"
    RUNNING = "running"
    FINISHED = "finished"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    DEAD = "dead"


class AtkStatus(enum.StrEnum):
    """The workflow status sent as X-ATK-Status."""

    ACTIVE = "Active"
    COMPLETED = "Completed"
    ABORTED = "Aborted"
    FAILED = "Failed"


ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.ACCEPTED: frozenset({JobState.RUNNING, JobState.FINISHED}),
    # back to accepted: the upstream was not reached, or a replay-safe call was interrupted
    JobState.RUNNING: frozenset({JobState.RUNNING, JobState.FINISHED, JobState.ACCEPTED}),
    JobState.FINISHED: frozenset({JobState.DELIVERING}),  # in the same save as FINISHED
    JobState.DELIVERING: frozenset({JobState.DELIVERED, JobState.DEAD, JobState.DELIVERING}),
    JobState.DELIVERED: frozenset({JobState.DELIVERING}),  # redelivered
    JobState.DEAD: frozenset({JobState.DELIVERING}),  # redelivered
}

# A finished job that owes a callback moves on to `delivering` in the same save, so a job
# found in `finished` owes nothing: these three states end a job's life.
TERMINAL = frozenset({JobState.FINISHED, JobState.DELIVERED, JobState.DEAD})
# States whose next step calls the upstream, and the one whose next step is a delivery.
UPSTREAM_STATES = frozenset({JobState.ACCEPTED, JobState.RUNNING})
DELIVERY_STATES = frozenset({JobState.DELIVERING})
REDELIVERABLE = frozenset({JobState.DEAD, JobState.DELIVERED})

Headers = list[tuple[str, str]]


class TransitionError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """The request to replay upstream: X-ATK-* and hop-by-hop headers already removed."""

    method: str
    path_qs: str
    headers: Headers
    body: bytes


@dataclass(frozen=True, slots=True)
class UpstreamResult:
    """What the upstream answered, or why it could not answer (status 0 and an error)."""

    status: int
    headers: Headers
    body: bytes
    error: str | None = None
    # the request never reached the upstream (refused, connect timeout): safe to try again
    not_sent: bool = False

    @property
    def content_type(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value
        return None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One callback delivery attempt: the receiver's status, or an error.

    An attempt is recorded (status and error None, `pending`) before its POST is sent, so
    that after a crash the next attempt carries the next number.
    """

    at: float
    status: int | None
    error: str | None
    duration: float
    retry_after: float | None = None  # what the receiver asked for, in seconds

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def pending(self) -> bool:
        return self.status is None and self.error is None


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    instance_id: str
    method: str
    path_qs: str
    request: UpstreamRequest | None = None  # None: not loaded (a status read)
    callback_url: str | None = None
    route: str | None = None
    replay_safe: bool = False
    path_params: dict[str, str] = field(default_factory=dict)
    state: JobState = JobState.ACCEPTED
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    result: UpstreamResult | None = None  # None: no result yet, or not loaded
    upstream_status: int | None = None  # facts of the result, kept with the small fields
    upstream_error: str | None = None
    status: AtkStatus | None = None
    reason: str | None = None
    attempts: tuple[Attempt, ...] = ()
    delivery_base: int = 0  # attempts before the current retry schedule began (redelivery)
    tries: int = 0  # upstream calls that did not reach the upstream
    due_at: float | None = None  # when the next step is due; None: nothing left to do
    lease_owner: str | None = None
    lease_until: float = 0.0
    idempotency: str | None = None  # digest of (method, path, Idempotency-Key)
    fingerprint: str | None = None  # digest of the request, to tell a repeat from a conflict
    reply: bytes | None = None  # the 202 body, kept for idempotent repeats
    owner: str | None = None  # keyed digest of the credentials the request carried
    trace: str | None = None  # W3C traceparent (and tracestate) of the request

    def changed(self, **changes: Any) -> Job:
        """A copy with `changes` (field names, as for dataclasses.replace)."""
        unknown = changes.keys() - _FIELDS
        if unknown:
            raise TypeError(f"Job has no field(s) {', '.join(sorted(unknown))}")
        return _copy_job(self, changes)

    def to(self, state: JobState, **changes: Any) -> Job:
        """The job moved to `state`; raises TransitionError on a move the life cycle forbids."""
        if state not in ALLOWED[self.state]:
            raise TransitionError(f"job {self.id}: {self.state} -> {state} is not allowed")
        return self.changed(state=state, updated_at=time.time(), **changes)

    def with_result(self, result: UpstreamResult) -> Job:
        return self.changed(**result_fields(result))

    def leased(self, owner: str, until: float) -> Job:
        return self.changed(lease_owner=owner, lease_until=until)

    def released(self, due_at: float | None) -> Job:
        """Handed back to the store: unleased, next due at `due_at` (None: nothing to do)."""
        return self.changed(**release(due_at))

    def light(self) -> Job:
        """The job without its bodies, as a status read returns it."""
        return self.changed(request=None, result=None, reply=None)

    @property
    def wants_callback(self) -> bool:
        return self.callback_url is not None

    @property
    def has_result(self) -> bool:
        return self.upstream_status is not None

    @property
    def delivery_attempts(self) -> tuple[Attempt, ...]:
        """The attempts of the current retry schedule."""
        return self.attempts[self.delivery_base :]


def result_fields(result: UpstreamResult) -> dict[str, Any]:
    """The changes that record `result` on a job."""
    return {"result": result, "upstream_status": result.status, "upstream_error": result.error}


def release(due_at: float | None) -> dict[str, Any]:
    """The changes that hand a job back to the store: unleased, next due at `due_at`."""
    return {"lease_owner": None, "lease_until": 0.0, "due_at": due_at}


def _job_copier() -> Callable[[Job, Mapping[str, Any]], Job]:
    """A function copying a job with some fields changed.

    A job is copied at every step (about 15 times in its life). dataclasses.replace walks
    the fields and then goes through __init__, whose frozen object.__setattr__ per field
    makes a copy of Job cost about 9 µs; this function reads and sets the slots directly
    (about 2 µs). It is generated, as dataclasses generates __init__, so that each field is
    one line of straight code rather than a turn of a loop."""
    names = [f.name for f in fields(Job)]
    scope: dict[str, Any] = {"new": object.__new__, "cls": Job}
    scope |= {f"set_{name}": getattr(Job, name).__set__ for name in names}
    body = "".join(f"    set_{n}(job, get({n!r}, old.{n}))\n" for n in names)
    head = "def copy(old, changes):\n    job = new(cls)\n    get = changes.get\n"
    exec(f"{head}{body}    return job\n", scope)  # our own field names, nothing from outside
    copier: Callable[[Job, Mapping[str, Any]], Job] = scope["copy"]
    return copier


_FIELDS = frozenset(f.name for f in fields(Job))
_copy_job = _job_copier()


def new_job_id() -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits (20), like UUIDv7.

    Ids that grow with time go to the end of the store's id index: random ones land all over
    it, and once the index outgrows SQLite's page cache (about a million jobs) each accept
    reads pages back from disk. 80 random bits keep an id unguessable."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"


def new_instance_id() -> str:
    """A random UUID (version 4) as text, written straight from 16 random bytes: what
    str(uuid.uuid4()) gives, without the UUID object in between (half the time)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
