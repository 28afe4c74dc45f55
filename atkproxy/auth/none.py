"""`none`: the callback goes out as it is."""

from __future__ import annotations

import aiohttp

from .base import StaticAuth
from .config import CallbackAuthSettings


class NoAuth(StaticAuth):
    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> NoAuth:
        return cls()
