"""The job drain's share of a shutdown, and the line that says what it left.

The line is the one the job engine being rewritten logs itself (`engine stopped`,
`jobs_left_in_store`); with that engine, `report_left` is no longer needed.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import structlog
from aiohttp import web

from .jobs import JobState
from .keys import SHUTDOWN_DEADLINE
from .store import JobStore

log = structlog.get_logger("atkproxy")

# States in which a job still has work: what a drain leaves for the next start.
UNFINISHED = (JobState.ACCEPTED, JobState.RUNNING, JobState.DELIVERING)


def drain_grace(app: web.Application, drain_timeout: float) -> float:
    """What is left of the shutdown's deadline; the whole timeout when none was set (tests)."""
    deadline = app.get(SHUTDOWN_DEADLINE)
    if deadline is None:
        return drain_timeout
    return max(0.0, deadline - asyncio.get_running_loop().time())


async def report_left(store: JobStore, grace: float) -> None:
    """One line: what the drain left in the store for the next start."""
    try:
        left = Counter(job.state.value for job in await store.in_states(UNFINISHED))
    except Exception as exc:  # a failing store must not stop the shutdown
        log.warning("engine stopped", grace=round(grace, 3), error=repr(exc))
        return
    log.info(
        "engine stopped",
        grace=round(grace, 3),
        jobs_left_in_store=sum(left.values()),
        by_state=dict(left),
    )
