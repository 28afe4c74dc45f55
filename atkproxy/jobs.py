"""Jobs: what an async request becomes, and the transitions it goes through (pure).

    accepted -> running -> finished -> delivering -> delivered
                                   \\-> (no callback: ends at finished)   \\-> dead

A job is recorded in the store before the 202 leaves. After a restart, `accepted`
jobs run, `finished`/`delivering` jobs deliver, and `running` jobs are settled by
the route's replay policy (see runner.recover).
"""

from __future__ import annotations

import base64
import enum
import json
import time
import uuid
from dataclasses import dataclass, field, replace
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
    JobState.RUNNING: frozenset({JobState.FINISHED, JobState.ACCEPTED}),
    JobState.FINISHED: frozenset({JobState.DELIVERING}),  # in the same save as FINISHED
    JobState.DELIVERING: frozenset({JobState.DELIVERED, JobState.DEAD, JobState.DELIVERING}),
    JobState.DELIVERED: frozenset(),
    JobState.DEAD: frozenset({JobState.DELIVERING}),
}

# A finished job that owes a callback moves on to `delivering` in the same save, so a job
# found in `finished` owes nothing: these three states end a job's life.
TERMINAL = frozenset({JobState.FINISHED, JobState.DELIVERED, JobState.DEAD})

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
    not_sent: bool = False  # the request never reached the upstream: safe to run again

    @property
    def content_type(self) -> str | None:
        for name, value in self.headers:
            if name.lower() == "content-type":
                return value
        return None


@dataclass(frozen=True, slots=True)
class Attempt:
    """One callback delivery attempt: the receiver's status, or an error."""

    at: float
    status: int | None
    error: str | None
    duration: float

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    instance_id: str
    request: UpstreamRequest
    callback_url: str | None = None
    route: str | None = None
    replay_safe: bool = False
    path_params: dict[str, str] = field(default_factory=dict)
    state: JobState = JobState.ACCEPTED
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    result: UpstreamResult | None = None
    status: AtkStatus | None = None
    reason: str | None = None
    attempts: tuple[Attempt, ...] = ()

    def to(self, state: JobState, **changes: Any) -> Job:
        """The job moved to `state`; raises TransitionError on a move the life cycle forbids."""
        if state not in ALLOWED[self.state]:
            raise TransitionError(f"job {self.id}: {self.state} -> {state} is not allowed")
        return replace(self, state=state, updated_at=time.time(), **changes)

    @property
    def wants_callback(self) -> bool:
        return self.callback_url is not None


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_instance_id() -> str:
    return str(uuid.uuid4())


# -- records: a JSON-safe dict form shared by every store backend -----------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def to_record(job: Job) -> dict[str, Any]:
    req = job.request
    res = job.result
    return {
        "id": job.id,
        "instance_id": job.instance_id,
        "request": {
            "method": req.method,
            "path_qs": req.path_qs,
            "headers": [list(h) for h in req.headers],
            "body": _b64(req.body),
        },
        "callback_url": job.callback_url,
        "route": job.route,
        "replay_safe": job.replay_safe,
        "path_params": job.path_params,
        "state": job.state.value,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "result": None
        if res is None
        else {
            "status": res.status,
            "headers": [list(h) for h in res.headers],
            "body": _b64(res.body),
            "error": res.error,
        },
        "status": None if job.status is None else job.status.value,
        "reason": job.reason,
        "attempts": [[a.at, a.status, a.error, a.duration] for a in job.attempts],
    }


def _headers(raw: list[list[str]]) -> Headers:
    return [(name, value) for name, value in raw]


def from_record(rec: dict[str, Any]) -> Job:
    req = rec["request"]
    res = rec["result"]
    return Job(
        id=rec["id"],
        instance_id=rec["instance_id"],
        request=UpstreamRequest(
            method=req["method"],
            path_qs=req["path_qs"],
            headers=_headers(req["headers"]),
            body=base64.b64decode(req["body"]),
        ),
        callback_url=rec["callback_url"],
        route=rec["route"],
        replay_safe=rec["replay_safe"],
        path_params=dict(rec["path_params"]),
        state=JobState(rec["state"]),
        created_at=rec["created_at"],
        updated_at=rec["updated_at"],
        result=None
        if res is None
        else UpstreamResult(
            status=res["status"],
            headers=_headers(res["headers"]),
            body=base64.b64decode(res["body"]),
            error=res["error"],
        ),
        status=None if rec["status"] is None else AtkStatus(rec["status"]),
        reason=rec["reason"],
        attempts=tuple(Attempt(*a) for a in rec["attempts"]),
    )


def dumps(job: Job) -> str:
    # ensure_ascii (the default) keeps lone surrogates, which aiohttp puts in headers
    # that were not UTF-8, storable: they become \udcXX escapes instead of failing to encode.
    return json.dumps(to_record(job))


def loads(text: str | bytes) -> Job:
    return from_record(json.loads(text))
