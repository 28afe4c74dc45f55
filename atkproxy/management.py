"""The management API under `management.prefix`: jobs, health, readiness."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .errors import json_error
from .forward import hop_filtered
from .jobs import Attempt, Job
from .keys import DRAINING, STORE


def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


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
        "error": attempt.error,
        "duration": attempt.duration,
    }


def job_view(job: Job) -> dict[str, Any]:
    """What the job API shows: facts of the job, never request headers or bodies."""
    result = job.result
    return {
        "job": job.id,
        "instance_id": job.instance_id,
        "state": job.state.value,
        "status": None if job.status is None else job.status.value,
        "method": job.request.method,
        "path": URL(job.request.path_qs, encoded=True).path,
        "route": job.route,
        "created_at": _time(job.created_at),
        "updated_at": _time(job.updated_at),
        "upstream": None if result is None else {"status": result.status, "error": result.error},
        "reason": job.reason,
        "callback": None
        if job.callback_url is None
        else {
            "url": redacted_url(job.callback_url),
            "attempts": [_attempt(n, a) for n, a in enumerate(job.attempts, 1)],
        },
    }


async def _load(request: web.Request) -> Job | web.Response:
    job = await request.app[STORE].get(request.match_info["job_id"])
    return json_error(404, "no such job") if job is None else job


async def get_job(request: web.Request) -> web.Response:
    job = await _load(request)
    return job if isinstance(job, web.Response) else web.json_response(job_view(job))


async def get_result(request: web.Request) -> web.Response:
    job = await _load(request)
    if isinstance(job, web.Response):
        return job
    if job.result is None:
        return json_error(409, f"the job has no result yet (state {job.state.value})", 1)
    headers = hop_filtered(CIMultiDict(job.result.headers))
    headers.popall("Content-Length", None)
    return web.Response(status=job.result.status, headers=headers, body=job.result.body)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    if request.app[DRAINING].is_set():  # SIGTERM came: let endpoints stop sending traffic
        return json_error(503, "shutting down")
    try:
        await request.app[STORE].get("readiness-probe")
    except Exception as exc:
        return json_error(503, f"job store unavailable: {exc.__class__.__name__}")
    return web.json_response({"status": "ready"})


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(f"{prefix}/health", health)
    app.router.add_get(f"{prefix}/ready", ready)
    app.router.add_get(f"{prefix}/jobs/{{job_id}}", get_job)
    app.router.add_get(f"{prefix}/jobs/{{job_id}}/result", get_result)
