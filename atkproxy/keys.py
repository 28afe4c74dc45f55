"""Typed application keys: the components a running proxy is made of."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .accept import Acceptor
from .auth import CallbackAuth
from .engine import Engine
from .http1 import Http1Upstream
from .metrics import Metrics
from .settings import Settings
from .store import JobStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", JobStore)
UPSTREAM = web.AppKey("upstream", Http1Upstream)
AUTH = web.AppKey("auth", CallbackAuth)
ACCEPTOR = web.AppKey("acceptor", Acceptor)
ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
# Set at SIGTERM: readiness answers 503 from then on, so endpoints stop sending traffic.
DRAINING = web.AppKey("draining", asyncio.Event)
# The loop time by which the shutdown must be done; jobs get what is left of it.
SHUTDOWN_DEADLINE = web.AppKey("shutdown_deadline", float)
