"""Credentials at rest: what a durable store writes never holds them in clear text.

The request headers recorded on a job (to replay the upstream call after a restart) may
carry the caller's credentials. Before a job reaches a durable store, the values of the
protected headers are encrypted with `store.secret_key` (Fernet: AES-128-CBC + HMAC), or,
when no key is set, left out of the record: the running process keeps them in memory, and
a job recovered after a restart runs without them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

import structlog
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from ..jobs import Headers, Job, JobState, UpstreamResult
from . import JobStore

log = structlog.get_logger("atkproxy.store")

SEALED = "fernet:"


class SealedStore:
    """Wraps a store: seals the request headers a job is added with, opens them when the
    job is claimed for work. Nothing else carries the request, so the rest passes through."""

    def __init__(self, inner: JobStore, protected: Iterable[str], key: SecretStr | None) -> None:
        self._inner = inner
        self._protected = frozenset(name.lower() for name in protected)
        self._fernet = None if key is None else Fernet(key.get_secret_value().encode())

    async def add(self, job: Job) -> Job:
        recorded = await self._inner.add(self._seal(job))
        # the job added is the caller's own (clear headers); an idempotent repeat's is stored
        return job if recorded.id == job.id else self._open(recorded)

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        claimed = await self._inner.claim(owner, states, now, until, limit)
        return [self._open(job) for job in claimed]

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        return await self._inner.renew(owner, job_ids, until)

    async def expire_leases(self) -> int:
        return await self._inner.expire_leases()

    async def update(self, job: Job, owner: str | None) -> None:
        # an update never writes the request: do not hand its clear headers to the store
        await self._inner.update(dataclasses.replace(job, request=None), owner)

    async def get(self, job_id: str) -> Job | None:
        return await self._inner.get(job_id)

    async def result(self, job_id: str) -> UpstreamResult | None:
        return await self._inner.result(job_id)

    async def page(
        self, state: JobState | None, limit: int, after: str | None
    ) -> tuple[list[Job], str | None]:
        return await self._inner.page(state, limit, after)

    async def redeliver(
        self,
        now: float,
        *,
        job_id: str | None = None,
        state: JobState | None = None,
        limit: int = 1,
    ) -> int:
        return await self._inner.redeliver(now, job_id=job_id, state=state, limit=limit)

    async def purge(self, before: float, limit: int) -> int:
        return await self._inner.purge(before, limit)

    async def compact(self) -> None:
        await self._inner.compact()

    async def counts(self) -> dict[JobState, int]:
        return await self._inner.counts()

    async def ping(self) -> None:
        await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()

    def _seal(self, job: Job) -> Job:
        if job.request is None:
            return job
        headers: Headers = []
        for name, value in job.request.headers:
            if name.lower() not in self._protected:
                headers.append((name, value))
            elif self._fernet is not None:
                headers.append((name, SEALED + self._fernet.encrypt(value.encode()).decode()))
        return _with_headers(job, headers)

    def _open(self, job: Job) -> Job:
        if job.request is None:
            return job
        headers: Headers = []
        for name, value in job.request.headers:
            if name.lower() in self._protected and value.startswith(SEALED):
                opened = self._decrypt(value.removeprefix(SEALED))
                if opened is None:
                    log.warning("cannot decrypt a recorded header", job=job.id, header=name)
                    continue
                value = opened
            headers.append((name, value))
        return _with_headers(job, headers)

    def _decrypt(self, token: str) -> str | None:
        if self._fernet is None:
            return None
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None


def _with_headers(job: Job, headers: Headers) -> Job:
    assert job.request is not None
    return dataclasses.replace(job, request=dataclasses.replace(job.request, headers=headers))
