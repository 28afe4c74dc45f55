"""`custom`: one configured header, `<custom_name>: <custom_value>`."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from .base import CallbackRequest, StaticAuth
from .config import CallbackAuthSettings


class CustomHeaderAuth(StaticAuth):
    def __init__(self, name: str, value: SecretStr) -> None:
        self._name = name
        self._value = value

    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> CustomHeaderAuth:
        assert settings.custom_name is not None and settings.custom_value is not None
        return cls(settings.custom_name, settings.custom_value)

    async def apply(self, request: CallbackRequest) -> None:
        request.headers[self._name] = self._value.get_secret_value()

    def __repr__(self) -> str:
        return f"CustomHeaderAuth(name={self._name!r})"
