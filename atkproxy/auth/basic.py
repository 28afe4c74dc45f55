"""`basic`: `Authorization: Basic <base64 user:password>`.

As in Automatiko, user + password win over a pre-encoded `basic` value when both are given;
the pre-encoded value is sent as it is.
"""

from __future__ import annotations

import base64

import aiohttp
from pydantic import SecretStr

from .base import CallbackRequest, StaticAuth
from .config import CallbackAuthSettings


def basic_credentials(settings: CallbackAuthSettings) -> SecretStr:
    """The value after `Basic `."""
    if settings.user is not None and settings.password is not None:
        pair = f"{settings.user}:{settings.password.get_secret_value()}"
        return SecretStr(base64.b64encode(pair.encode("utf-8")).decode("ascii"))
    assert settings.basic is not None  # checked by CallbackAuthSettings
    return settings.basic


class BasicAuth(StaticAuth):
    def __init__(self, credentials: SecretStr) -> None:
        self._credentials = credentials

    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> BasicAuth:
        return cls(basic_credentials(settings))

    async def apply(self, request: CallbackRequest) -> None:
        request.headers["Authorization"] = f"Basic {self._credentials.get_secret_value()}"
