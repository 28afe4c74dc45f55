"""The management API under `management.prefix`: jobs, the dead letter, health, readiness.

    GET  /jobs/{id}                 a job's facts (never its headers or bodies)       (owner)
    GET  /jobs/{id}/result          the upstream's answer, as the sync call would have given it
                                                                                      (owner)
    GET  /jobs?state=&limit=&after= jobs newest first, a cursor to the next page     (token)
    POST /jobs/{id}/redeliver       a dead or delivered job delivers again            (token)
    POST /jobs/redeliver?state=&limit=   the same in bulk; answers how many           (token)
    GET  /health, /ready            liveness; readiness (503 while the store cannot take a
                                    write, or while the proxy is draining)
    GET  /metrics                   Prometheus text format (metrics.py names them)

The (token) endpoints need `Authorization: Bearer <management.token>`; with no token
configured they answer only peers on loopback. The (owner) endpoints show a job made with
credentials only to the same credentials or the token (ownership.py); to anyone else it
is a 404 like an unknown id. Store errors answer 503 JSON.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .errors import json_error
from .headers import hop_filtered
from .jobs import REDELIVERABLE, Attempt, Job, JobState
from .keys import DRAINING, ENGINE, SETTINGS, STORE
from .metering import metrics_endpoint
from .ownership import Ownership, ownership_for

MAX_LIMIT = 1000
READY_CHECK_INTERVAL = 1.0  # a real write at most this often, however often the probe asks

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _time(ts: float | None) -> str | None:
    return (
        None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")
    )


def redacted_url(url: str) -> str:
    """Query values, user info and fragment hidden: any of them may carry a credential."""
    parsed = URL(url)
    shown = parsed.with_user(None).with_query({k: "***" for k in parsed.query}).with_fragment(None)
    return str(shown)


def _attempt(number: int, attempt: Attempt) -> dict[str, Any]:
    return {
        "attempt": number,
        "at": _time(attempt.at),
        "status": attempt.status,
        "error": "in flight" if attempt.pending else attempt.error,
        "duration": attempt.duration,
    }


def job_view(job: Job) -> dict[str, Any]:
    """What the job API shows: facts of the job, never request headers or bodies."""
    upstream = None
    if job.has_result:
        upstream = {"status": job.upstream_status, "error": job.upstream_error}
    return {
        "job": job.id,
        "instance_id": job.instance_id,
        "state": job.state.value,
        "status": None if job.status is None else job.status.value,
        "method": job.method,
        "path": URL(job.path_qs, encoded=True).path,
        "route": job.route,
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "due_at": _time(job.due_at),
        "upstream": upstream,
        "upstream_tries": job.tries,
        "reason": job.reason,
        "callback": None
        if job.callback_url is None
        else {
            "url": redacted_url(job.callback_url),
            "attempts": [_attempt(n, a) for n, a in enumerate(job.attempts, 1)],
        },
    }


def store_errors(handler: Handler) -> Handler:
    """A store that fails answers 503 JSON, not a 500."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            retry = request.app[SETTINGS].async_.retry_after
            return json_error(503, f"job store unavailable ({exc.__class__.__name__})", retry)

    return guarded


def operator_only(handler: Handler) -> Handler:
    """The bearer management.token, or (with none configured) a peer on loopback."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        token = request.app[SETTINGS].management.token
        if token is None:
            if not _loopback(request.remote):
                return json_error(403, "set management.token to use this endpoint remotely")
        else:
            given = request.headers.get("Authorization", "")
            wanted = f"Bearer {token.get_secret_value()}"
            if not hmac.compare_digest(given.encode(), wanted.encode()):
                response = json_error(401, "a valid bearer management.token is required")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return await handler(request)

    return guarded


def _loopback(peer: str | None) -> bool:
    try:
        return peer is not None and ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False


async def _load(request: web.Request) -> Job | web.Response:
    job = await request.app[STORE].get(request.match_info["job_id"])
    return json_error(404, "no such job") if job is None else job


async def _load_own(request: web.Request) -> Job | web.Response:
    """The job when this caller may read it; else the 404 of an unknown id (ownership.py)."""
    job = await _load(request)
    if isinstance(job, Job) and not _ownership(request).may_read(job.owner, request.headers):
        return json_error(404, "no such job")
    return job


def _ownership(request: web.Request) -> Ownership:
    return ownership_for(request.app[SETTINGS])


@store_errors
async def get_job(request: web.Request) -> web.StreamResponse:
    job = await _load_own(request)
    return job if isinstance(job, web.Response) else web.json_response(job_view(job))


@store_errors
async def get_result(request: web.Request) -> web.StreamResponse:
    job = await _load_own(request)
    if isinstance(job, web.Response):
        return job
    result = await request.app[STORE].result(job.id)
    if result is None:
        return json_error(409, f"the job has no result yet (state {job.state.value})", 1)
    headers = hop_filtered(CIMultiDict(result.headers))
    headers.popall("Content-Length", None)
    return web.Response(status=result.status, headers=headers, body=result.body)


def _state(request: web.Request, allowed: frozenset[JobState] | None = None) -> JobState | None:
    value = request.query.get("state")
    if value is None:
        return None
    try:
        state = JobState(value)
    except ValueError:
        states = [s.value for s in JobState]
        raise web.HTTPBadRequest(**_bad(f"state must be one of {states}")) from None
    if allowed is not None and state not in allowed:
        raise web.HTTPBadRequest(**_bad(f"state must be one of {sorted(allowed)}"))
    return state


def _limit(request: web.Request, default: int) -> int:
    value = request.query.get("limit", str(default))
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise web.HTTPBadRequest(**_bad(f"limit must be a whole number from 1 to {MAX_LIMIT}"))
    return int(value)


def _bad(message: str) -> dict[str, Any]:
    body = json_error(400, message)
    return {"text": body.text, "content_type": "application/json"}


@store_errors
@operator_only
async def list_jobs(request: web.Request) -> web.StreamResponse:
    state, limit = _state(request), _limit(request, 100)
    try:
        jobs, cursor = await request.app[STORE].page(state, limit, request.query.get("after"))
    except ValueError as exc:
        return json_error(400, str(exc))
    return web.json_response({"jobs": [job_view(job) for job in jobs], "next": cursor})


@store_errors
@operator_only
async def redeliver_one(request: web.Request) -> web.StreamResponse:
    job = await _load(request)
    if isinstance(job, web.Response):
        return job
    if await request.app[STORE].redeliver(time.time(), job_id=job.id) == 0:
        return json_error(409, f"only a dead or delivered job can be redelivered ({job.state})")
    request.app[ENGINE].wake()
    return web.json_response({"redelivered": 1, "job": job.id}, status=202)


@store_errors
@operator_only
async def redeliver_many(request: web.Request) -> web.StreamResponse:
    state = _state(request, REDELIVERABLE) or JobState.DEAD
    limit = _limit(request, 100)
    moved = await request.app[STORE].redeliver(time.time(), state=state, limit=limit)
    request.app[ENGINE].wake()
    return web.json_response({"redelivered": moved, "state": state.value}, status=202)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


class Readiness:
    """Ready while the store takes a write (checked at most once a second) and not draining."""

    def __init__(self) -> None:
        self.draining = False
        self._checked_at = -READY_CHECK_INTERVAL
        self._error: str | None = None

    async def answer(self, request: web.Request) -> web.Response:
        if self.draining or request.app[DRAINING].is_set():  # SIGTERM: endpoints move on
            return json_error(503, "draining: the proxy is shutting down")
        now = time.monotonic()
        if now - self._checked_at >= READY_CHECK_INTERVAL:
            self._checked_at, self._error = now, await self._check(request)
        if self._error is not None:
            return json_error(503, self._error)
        return web.json_response({"status": "ready"})

    @staticmethod
    async def _check(request: web.Request) -> str | None:
        try:
            await request.app[STORE].ping()
        except Exception as exc:
            return f"job store cannot take a write: {exc.__class__.__name__}"
        return None


def add_routes(app: web.Application, prefix: str, readiness: Readiness) -> None:
    app.router.add_get(f"{prefix}/health", health)
    app.router.add_get(f"{prefix}/ready", readiness.answer)
    app.router.add_get(f"{prefix}/metrics", metrics_endpoint)
    app.router.add_get(f"{prefix}/jobs", list_jobs)
    app.router.add_post(f"{prefix}/jobs/redeliver", redeliver_many)
    app.router.add_get(f"{prefix}/jobs/{{job_id}}", get_job)
    app.router.add_get(f"{prefix}/jobs/{{job_id}}/result", get_result)
    app.router.add_post(f"{prefix}/jobs/{{job_id}}/redeliver", redeliver_one)
