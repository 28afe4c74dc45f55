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
# Without a key, the credentials of jobs that wait in the store are kept here, in memory, for
# as long as the job has work: at most this much (the oldest go first, as after a restart).
MAX_KEPT_BYTES = 64 * 1024 * 1024


class SealedStore:
    """Wraps a store: seals the request headers a job is added with, opens them when the
    job is claimed for work. Nothing else carries the request, so the rest passes through."""

    def __init__(self, inner: JobStore, protected: Iterable[str], key: SecretStr | None) -> None:
        self._inner = inner
        self._protected = frozenset(name.lower() for name in protected)
        self._fernet = None if key is None else Fernet(key.get_secret_value().encode())
        self._kept = KeptInMemory(MAX_KEPT_BYTES)

    async def add(self, job: Job) -> Job:
        recorded = await self._inner.add(self._seal(job))
        if recorded.id != job.id:  # an idempotent repeat: the job stored under its key
            return self._open(recorded)
        if self._fernet is None and job.request is not None:
            self._kept.keep(job.id, self._protected_of(job.request.headers))
        return job  # the caller's own, clear headers and all

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
        await self._inner.update(job.changed(request=None), owner)
        if job.due_at is None:  # nothing left to do: the credentials are not needed again
            self._kept.drop(job.id)

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
        if job.request is None or not self._protected_of(job.request.headers):
            return job  # nothing to seal: no copy
        headers: Headers = []
        for name, value in job.request.headers:
            if name.lower() not in self._protected:
                headers.append((name, value))
            elif self._fernet is not None:
                headers.append((name, SEALED + self._fernet.encrypt(value.encode()).decode()))
        return _with_headers(job, headers)

    def _protected_of(self, headers: Headers) -> Headers:
        return [(name, value) for name, value in headers if name.lower() in self._protected]

    def _open(self, job: Job) -> Job:
        if job.request is None:
            return job
        headers: Headers = [*self._kept.get(job.id)]
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


class KeptInMemory:
    """Protected headers of jobs not yet done, by job id, bounded by bytes (oldest dropped)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._headers: dict[str, Headers] = {}
        self.size = 0

    def keep(self, job_id: str, headers: Headers) -> None:
        if not headers:
            return
        self._headers[job_id] = headers
        self.size += _cost(headers)
        while self.size > self._limit:
            oldest = next(iter(self._headers))
            log.warning("credentials of a waiting job dropped from memory", job=oldest)
            self.drop(oldest)

    def get(self, job_id: str) -> Headers:
        return self._headers.get(job_id, [])

    def drop(self, job_id: str) -> None:
        headers = self._headers.pop(job_id, None)
        if headers is not None:
            self.size -= _cost(headers)


def _cost(headers: Headers) -> int:
    return sum(100 + len(name) + len(value) for name, value in headers)


def _with_headers(job: Job, headers: Headers) -> Job:
    assert job.request is not None
    return job.changed(request=dataclasses.replace(job.request, headers=headers))
