"""The callback authentication interface, shared by every mode.

Exception
 └── CallbackAuthError   the callback cannot be authenticated now (token endpoint down,
                         refused, credential lost); the message is safe to record
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr
from yarl import URL

from ..jobs import Job


class CallbackAuthError(Exception):
    """Authentication of a callback could not be done; the message holds no secret."""


@dataclass(slots=True)
class CallbackRequest:
    """The callback about to be sent; an auth mode may add headers or change the URL."""

    url: URL
    headers: CIMultiDict[str]
    job: Job

    def __repr__(self) -> str:
        # header values and the query may carry credentials: show only their names
        names = ", ".join(sorted({name.lower() for name in self.headers}))
        url = self.url.with_query(None).with_password(None)
        return f"CallbackRequest(url={url}, headers=[{names}], job={self.job.id})"


class CallbackAuth(Protocol):
    def capture(self, job_id: str, incoming: CIMultiDictProxy[str]) -> None:
        """Keep what the mode needs from the incoming async request (on-behalf)."""

    async def apply(self, request: CallbackRequest) -> None:
        """Authenticate the callback request; raises CallbackAuthError when it cannot."""

    async def renew(self) -> bool:
        """The receiver answered 401 to the callback this task last applied: True when one
        retry (apply again, send again) is worth it. Concurrent 401s renew a token once."""

    def forget(self, job_id: str) -> None:
        """The job's delivery is over: drop anything kept for it."""

    async def close(self) -> None: ...


class StaticAuth:
    """The parts shared by modes that keep nothing per job and cannot renew."""

    def capture(self, job_id: str, incoming: CIMultiDictProxy[str]) -> None:
        pass

    async def apply(self, request: CallbackRequest) -> None:
        pass

    async def renew(self) -> bool:
        return False

    def forget(self, job_id: str) -> None:
        pass

    async def close(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NamedSecretAuth(StaticAuth):
    """A mode that sends one configured name with a secret value (custom header, query)."""

    def __init__(self, name: str, value: SecretStr) -> None:
        self._name = name
        self._value = value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"
