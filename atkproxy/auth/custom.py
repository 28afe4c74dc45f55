"""`custom`: one configured header, `<custom_name>: <custom_value>`."""

from __future__ import annotations

import aiohttp

from .base import CallbackRequest, NamedSecretAuth
from .config import CallbackAuthSettings


class CustomHeaderAuth(NamedSecretAuth):
    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> CustomHeaderAuth:
        assert settings.custom_name is not None and settings.custom_value is not None
        return cls(settings.custom_name, settings.custom_value)

    async def apply(self, request: CallbackRequest) -> None:
        request.headers[self._name] = self._value.get_secret_value()
