"""Typed application keys: the components a running proxy is made of."""

from __future__ import annotations

from aiohttp import web

from .accept import Acceptor
from .auth import CallbackAuth
from .forward import Upstream
from .runner import Runner
from .settings import Settings
from .store import JobStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", JobStore)
UPSTREAM = web.AppKey("upstream", Upstream)
AUTH = web.AppKey("auth", CallbackAuth)
RUNNER = web.AppKey("runner", Runner)
ACCEPTOR = web.AppKey("acceptor", Acceptor)
