"""Callback authentication: one interface, one small module per mode (`callback.auth.type`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..jobs import Job
from .config import CallbackAuthSettings


@dataclass(slots=True)
class CallbackRequest:
    """The callback about to be sent; an auth mode may add headers or change the URL."""

    url: URL
    headers: CIMultiDict[str]
    job: Job


class CallbackAuth(Protocol):
    def capture(self, job_id: str, incoming: CIMultiDictProxy[str]) -> None:
        """Keep what the mode needs from the incoming async request (on-behalf)."""

    async def apply(self, request: CallbackRequest) -> None:
        """Authenticate the callback request."""

    async def renew(self) -> bool:
        """The receiver answered 401: renew credentials; True when one retry is worth it."""

    def forget(self, job_id: str) -> None:
        """The job's delivery is over: drop anything kept for it."""

    async def close(self) -> None: ...


class NoAuth:
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


def create_auth(settings: CallbackAuthSettings) -> CallbackAuth:
    if settings.type == "none":
        return NoAuth()
    raise ValueError(f"callback.auth.type: {settings.type!r} is not implemented yet")


class CallbackAuthError(Exception):
    """Authentication of a callback could not be done; the message is safe to record."""
