"""`on-behalf`: the incoming request's `on_behalf_name` header is set on its callback.

The captured value is a credential of the caller. It is kept in memory only, per job, as a
SecretStr (so no repr or log shows it), and dropped by `forget` when the job ends in any way
(no callback owed, delivered, dead). What is held is bounded by bytes (MAX_CAPTURED_BYTES):
past it the oldest values are dropped, and their callbacks take the value from the recorded
request, as after a restart.

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

# Values held at most; a backlog of waiting jobs with callbacks must not grow memory unbounded.
MAX_CAPTURED_BYTES = 16 * 1024 * 1024


class OnBehalfAuth(StaticAuth):
    def __init__(self, name: str) -> None:
        self._name = name
        self._captured: dict[str, SecretStr | None] = {}  # None: the request had no such header
        self._bytes = 0

    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> OnBehalfAuth:
        return cls(settings.on_behalf_name)

    def capture(self, job_id: str, incoming: CIMultiDictProxy[str]) -> None:
        value = incoming.get(self._name)  # the proxy matches header names case-insensitively
        self.forget(job_id)
        self._captured[job_id] = None if value is None else SecretStr(value)
        self._bytes += _size(job_id, self._captured[job_id])
        while self._bytes > MAX_CAPTURED_BYTES:
            self.forget(next(iter(self._captured)))

    async def apply(self, request: CallbackRequest) -> None:
        value = self._value(request)
        if value is not None:
            request.headers[self._name] = value.get_secret_value()

    def forget(self, job_id: str) -> None:
        if job_id in self._captured:
            self._bytes -= _size(job_id, self._captured.pop(job_id))

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

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def __repr__(self) -> str:
        return f"OnBehalfAuth(name={self._name!r}, captured={len(self._captured)})"


def _size(job_id: str, value: SecretStr | None) -> int:
    """What one captured value costs, roughly: the job id and the value (and their entry)."""
    return 100 + len(job_id) + (0 if value is None else len(value.get_secret_value()))
