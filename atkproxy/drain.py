"""The job drain's share of a shutdown: what is left of its deadline."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .keys import SHUTDOWN_DEADLINE


def drain_grace(app: web.Application, drain_timeout: float) -> float:
    """What is left of the shutdown's deadline; the whole timeout when none was set (tests)."""
    deadline = app.get(SHUTDOWN_DEADLINE)
    if deadline is None:
        return drain_timeout
    return max(0.0, deadline - asyncio.get_running_loop().time())
