"""`query`: `<query_name>=<query_value>` appended to the callback URL.

The rest of the callback URL's query is kept as the client wrote it; a parameter of the same
name given by the client is replaced, so the receiver never sees two competing values.
"""

from __future__ import annotations

import aiohttp
from yarl import URL

from ..urls import with_query_param
from .base import CallbackRequest, NamedSecretAuth
from .config import CallbackAuthSettings


def with_parameter(url: URL, name: str, value: str) -> URL:
    """`url` with `name=value` last in its query; the other parameters are kept byte for byte."""
    return URL.build(
        scheme=url.scheme,
        authority=url.raw_authority,
        path=url.raw_path,
        query_string=with_query_param(url.raw_query_string, name, value),
        fragment=url.raw_fragment,
        encoded=True,
    )


class QueryAuth(NamedSecretAuth):
    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> QueryAuth:
        assert settings.query_name is not None and settings.query_value is not None
        return cls(settings.query_name, settings.query_value)

    async def apply(self, request: CallbackRequest) -> None:
        request.url = with_parameter(request.url, self._name, self._value.get_secret_value())
