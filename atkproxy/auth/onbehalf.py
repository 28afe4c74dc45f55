"""`on-behalf`: the incoming request's `on_behalf_name` header is set on its callback.

The captured value is a credential of the caller. It is kept in memory only, per job, as a
SecretStr (so no repr or log shows it), and dropped by `forget` when the delivery is over
(or, for jobs never delivered, once MAX_CAPTURED newer jobs were captured).

After a restart the memory is empty. The value is then taken from the job's recorded upstream
request (the same header was forwarded to the backend and is replayed from there, under the
store's protection); if that has no such header either, the callback goes out without it,
as Automatiko sends none when the incoming request had none.
"""

from __future__ import annotations

import aiohttp
from multidict import CIMultiDictProxy
from pydantic import SecretStr

from .base import CallbackRequest, StaticAuth
from .config import CallbackAuthSettings

# Jobs that end without a delivery are never forgotten; past this many, the oldest are
# dropped and fall back to the recorded request, as after a restart.
MAX_CAPTURED = 100_000


class OnBehalfAuth(StaticAuth):
    def __init__(self, name: str) -> None:
        self._name = name
        self._captured: dict[str, SecretStr | None] = {}  # None: the request had no such header

    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> OnBehalfAuth:
        return cls(settings.on_behalf_name)

    def capture(self, job_id: str, incoming: CIMultiDictProxy[str]) -> None:
        value = incoming.get(self._name)  # the proxy matches header names case-insensitively
        self._captured[job_id] = None if value is None else SecretStr(value)
        if len(self._captured) > MAX_CAPTURED:
            del self._captured[next(iter(self._captured))]

    async def apply(self, request: CallbackRequest) -> None:
        value = self._value(request)
        if value is not None:
            request.headers[self._name] = value.get_secret_value()

    def forget(self, job_id: str) -> None:
        self._captured.pop(job_id, None)

    def _value(self, request: CallbackRequest) -> SecretStr | None:
        job = request.job
        if job.id in self._captured:
            return self._captured[job.id]
        wanted = self._name.lower()
        headers = job.request.headers if job.request is not None else []
        recorded = (value for name, value in headers if name.lower() == wanted)
        found = next(recorded, None)
        return None if found is None else SecretStr(found)

    def __len__(self) -> int:
        return len(self._captured)

    def __repr__(self) -> str:
        return f"OnBehalfAuth(name={self._name!r}, captured={len(self._captured)})"
