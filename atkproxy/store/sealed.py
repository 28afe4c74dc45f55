"""Credentials at rest: what a durable store writes never holds them in clear text.

The request headers recorded on a job (to replay the upstream call after a restart) may
carry the caller's credentials. Before a job reaches a durable store, the values of the
protected headers are encrypted with `store.secret_key` (Fernet: AES-128-CBC + HMAC), or,
when no key is set, left out of the record: the running process keeps them in memory, and
a job recovered after a restart runs without them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import structlog
from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

from ..jobs import Headers, Job, JobState
from . import JobStore

log = structlog.get_logger("atkproxy.store")

SEALED = "fernet:"


class SealedStore:
    def __init__(self, inner: JobStore, protected: Iterable[str], key: SecretStr | None) -> None:
        self._inner = inner
        self._protected = frozenset(name.lower() for name in protected)
        self._fernet = None if key is None else Fernet(key.get_secret_value().encode())

    async def add(self, job: Job) -> None:
        await self._inner.add(self._seal(job))

    async def save(self, job: Job) -> None:
        await self._inner.save(self._seal(job))

    async def get(self, job_id: str) -> Job | None:
        job = await self._inner.get(job_id)
        return None if job is None else self._open(job)

    async def in_states(self, states: Iterable[JobState]) -> list[Job]:
        return [self._open(job) for job in await self._inner.in_states(states)]

    async def purge(self, finished_before: float) -> int:
        return await self._inner.purge(finished_before)

    async def close(self) -> None:
        await self._inner.close()

    def _seal(self, job: Job) -> Job:
        headers: Headers = []
        for name, value in job.request.headers:
            if name.lower() not in self._protected:
                headers.append((name, value))
            elif self._fernet is not None:
                headers.append((name, SEALED + self._fernet.encrypt(value.encode()).decode()))
        return _with_headers(job, headers)

    def _open(self, job: Job) -> Job:
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
    return dataclasses.replace(job, request=dataclasses.replace(job.request, headers=headers))
