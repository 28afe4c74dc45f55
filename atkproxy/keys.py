"""Typed application keys: the components a running proxy is made of."""

from __future__ import annotations

from aiohttp import web

from .accept import Acceptor
from .auth import CallbackAuth
from .engine import Engine
from .forward import Upstream
from .settings import Settings
from .store import JobStore

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", JobStore)
UPSTREAM = web.AppKey("upstream", Upstream)
AUTH = web.AppKey("auth", CallbackAuth)
ACCEPTOR = web.AppKey("acceptor", Acceptor)
ENGINE = web.AppKey("engine", Engine)
