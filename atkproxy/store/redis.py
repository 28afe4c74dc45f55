"""Redis job store: one store shared by every replica (redis://host:6379/0, rediss://...).

Every transition is one Lua script (see redis_lua.py for the keys), so two replicas
racing for a job cannot both win, and nothing is half-written. `add` returns when Redis
has acknowledged the script; how durable that is depends on Redis's persistence
(`appendonly yes` with `appendfsync always`: on disk; `everysec`: up to a second of
writes can be lost with the machine). See docs/redis.md.

Redis errors (connection refused, timeout, READONLY, OOM) are raised to the caller, who
retries later; the client reconnects by itself, so the store survives a Redis restart
without being opened again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Sequence
from typing import Any

import structlog
from pydantic import SecretStr
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from ..jobs import REDELIVERABLE, Job, JobState, UpstreamResult
from . import JobMissing, LeaseLost
from . import redis_lua as lua
from .memory import cursor_of, parse_cursor
from .redis_codec import (
    SMALL_FIELDS,
    Fields,
    all_fields,
    decode_job,
    decode_result,
    encode_result,
    small_fields,
    unpack,
)
from .redis_lua import Script

log = structlog.get_logger("atkproxy.store")

DEFAULT_PREFIX = "atkproxy:"
MIN_VERSION = (7, 0)  # scripts that declare their flags (#!lua)
# Short enough that a call fails while Redis is away rather than hanging the engine.
# One quick retry on a connection error rides over a connection that died while idle (a
# Redis restart): the command never ran. No retry on a timeout, where it may have run.
SOCKET_TIMEOUT = 5.0
CONNECT_TIMEOUT = 2.0
HEALTH_CHECK_INTERVAL = 15
RETRIES = 1
PING_EXPIRY = 60  # seconds the ping key lives
MAX_CONNECTIONS = 32
WRITE_BATCH = 256  # script calls in one pipeline at most

# redis-py types itself, but the old types-redis stubs win when installed, and the two
# disagree (is Redis generic? has it aclose?): the client is held untyped to check under both.
RedisClient = Any

_SMALL_KEYS = [name.encode() for name in SMALL_FIELDS]
# what the scripts answer besides 0 (done)
_UPDATE_MISSING, _UPDATE_LEASE_LOST = 1, 2
_KNOWN, _ID_TAKEN = 1, 2


def connect(url: str, password: SecretStr | None = None) -> RedisClient:
    """A client for `url` (not connected yet); certificates are verified for rediss://."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), RETRIES, (RedisConnectionError,)),
        "decode_responses": False,
        # status reads wait for a free connection rather than open one each
        "max_connections": MAX_CONNECTIONS,
        "timeout": SOCKET_TIMEOUT,
    }
    if password is not None:
        options["password"] = password.get_secret_value()
    if url.startswith("rediss://"):
        options |= {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
    return Redis(connection_pool=BlockingConnectionPool.from_url(url, **options))


Call = tuple[Script, list[Any], "asyncio.Future[Any]"]  # a script, its ARGV, the caller's future


class WriteQueue:
    """Script calls sent in the order they were made; those made while a batch is in flight
    go together in the next pipeline: one round trip (and, with appendfsync always, one
    fsync) for many writes, as SQLite's group commit."""

    def __init__(self, client: RedisClient, batch: int = WRITE_BATCH) -> None:
        self._client = client
        self._batch = batch
        self._queue: list[Call] = []
        self._flusher: asyncio.Task[None] | None = None

    async def call(self, script: Script, args: list[Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((script, args, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self._batch], self._queue[self._batch :]
            try:
                replies = await self._send(batch)
            except Exception as exc:  # the whole batch failed: each caller gets the error
                replies = [exc] * len(batch)
            for (_, _, future), reply in zip(batch, replies, strict=True):
                if future.done():  # the caller was cancelled; the write stands
                    continue
                if isinstance(reply, Exception):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)

    async def _send(self, batch: list[Call]) -> list[Any]:
        replies = await self._pipeline(batch)
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # Redis restarted, or its scripts were flushed: load them, send again
            for script in {batch[n][0].sha: batch[n][0] for n in missing}.values():
                await self._client.script_load(script.text)
            again = await self._pipeline([batch[n] for n in missing])
            for n, reply in zip(missing, again, strict=True):
                replies[n] = reply
        return replies

    async def _pipeline(self, batch: list[Call]) -> list[Any]:
        # EVALSHA without redis-py's script check, which costs a round trip per pipeline
        async with self._client.pipeline(transaction=False) as pipe:
            for script, args, _ in batch:
                pipe.evalsha(script.sha, 0, *args)
            return list(await pipe.execute(raise_on_error=False))

    async def close(self) -> None:
        if self._flusher is not None:
            await asyncio.wait([self._flusher])


class UnfitRedis(Exception):
    """The Redis cannot run the store (too old)."""


def too_old(version: str) -> bool:
    numbers = [int(part) if part.isdigit() else 0 for part in version.split(".")[:2]]
    return tuple(numbers) < MIN_VERSION


async def check_server(client: RedisClient) -> None:
    """Refuse a Redis too old for the scripts; warn of settings that lose jobs."""
    info = await client.info()
    version = str(info.get("redis_version", "0"))
    if too_old(version):
        raise UnfitRedis(f"Redis {version} is too old: the store needs Redis 7.0 or newer")
    if not info.get("aof_enabled"):
        log.warning(
            "Redis has appendonly off: accepted jobs are lost when Redis restarts "
            "(see docs/redis.md)"
        )
    try:
        config = await client.config_get("maxmemory-policy")
    except ResponseError:  # CONFIG is often disabled on a managed Redis
        return
    policy = next(iter(config.values()), "noeviction")
    policy = policy.decode() if isinstance(policy, bytes) else str(policy)
    if policy != "noeviction":
        log.warning(
            "Redis evicts keys when full: jobs can vanish; use maxmemory-policy noeviction",
            policy=policy,
        )


class RedisStore:
    def __init__(self, client: RedisClient, prefix: str = DEFAULT_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._writes = WriteQueue(client)

    @classmethod
    async def open(
        cls, url: str, password: SecretStr | None = None, prefix: str = DEFAULT_PREFIX
    ) -> RedisStore:
        """Connect and check that Redis takes writes; redis errors propagate."""
        store = cls(connect(url, password), prefix)
        try:
            await store.ping()
            await check_server(store._redis)
        except BaseException:
            await store.close()
            raise
        return store

    def _key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    async def add(self, job: Job) -> Job:
        written = all_fields(job)
        args = [self._prefix, job.id, job.idempotency or "", len(written), *_flat(written)]
        reply = await self._writes.call(lua.ADD, args)
        if reply[0] == _KNOWN:
            return decode_job(unpack(reply[1]))
        if reply[0] == _ID_TAKEN:
            raise KeyError(f"job {job.id} exists")
        return job

    async def claim(
        self, owner: str, states: Collection[JobState], now: float, until: float, limit: int
    ) -> list[Job]:
        if limit <= 0 or not states:
            return []
        args = [self._prefix, owner, repr(now), repr(until), limit, *(s.value for s in states)]
        return [decode_job(unpack(packed)) for packed in await self._writes.call(lua.CLAIM, args)]

    async def renew(self, owner: str, job_ids: Collection[str], until: float) -> set[str]:
        if not job_ids:
            return set()
        held = await self._writes.call(lua.RENEW, [self._prefix, owner, repr(until), *job_ids])
        return {job_id.decode() for job_id in held}

    async def expire_leases(self) -> int:
        expired: int = await self._writes.call(lua.EXPIRE_LEASES, [self._prefix])
        return expired

    async def update(self, job: Job, owner: str | None) -> None:
        written, absent = small_fields(job)
        result = b"" if job.result is None else encode_result(job.result)
        args = [
            self._prefix,
            job.id,
            owner or "",
            repr(time.time()),
            result,
            len(written),
            *_flat(written),
            *absent,
        ]
        outcome = await self._writes.call(lua.UPDATE, args)
        if outcome == _UPDATE_MISSING:
            raise JobMissing(job.id)
        if outcome == _UPDATE_LEASE_LOST:
            raise LeaseLost(job.id)

    async def get(self, job_id: str) -> Job | None:
        values = await self._redis.hmget(self._key("job", job_id), _SMALL_KEYS)
        return _small_job(values)

    async def result(self, job_id: str) -> UpstreamResult | None:
        raw = await self._redis.hget(self._key("job", job_id), "result")
        return None if raw is None else decode_result(raw)

    async def page(
        self, state: JobState | None, limit: int, after: str | None
    ) -> tuple[list[Job], str | None]:
        index = self._key("created", "all" if state is None else state.value)
        ids = await self._newest_ids(index, limit + 1, after)
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self._key("job", job_id), _SMALL_KEYS)
            rows = await pipe.execute()
        # a job purged or moved to another state since the index was read is left out
        jobs = [
            job
            for job in map(_small_job, rows)
            if job is not None and (state is None or job.state is state)
        ]
        shown = jobs[:limit]
        more = len(ids) > limit
        return shown, cursor_of(shown[-1]) if more and shown else None

    async def _newest_ids(self, index: str, count: int, after: str | None) -> list[str]:
        """Up to `count` ids of `index`, newest first, older than the cursor `after`."""
        if after is None:
            return [m.decode() for m in await self._redis.zrevrange(index, 0, count - 1)]
        at, last_id = parse_cursor(after)
        found: list[str] = []
        offset = 0
        while len(found) < count:
            batch = await self._redis.zrevrangebyscore(
                index, repr(at), "-inf", start=offset, num=count, withscores=True
            )
            if not batch:
                break
            offset += len(batch)
            # equal created_at: ids in descending order, so skip those not below the cursor
            found += [m.decode() for m, s in batch if s < at or m.decode() < last_id]
        return found[:count]

    async def redeliver(
        self,
        now: float,
        *,
        job_id: str | None = None,
        state: JobState | None = None,
        limit: int = 1,
    ) -> int:
        if job_id is None and state not in REDELIVERABLE:
            return 0
        args = [
            self._prefix,
            repr(now),
            repr(time.time()),
            job_id or "",
            "" if state is None else state.value,
            limit,
        ]
        return int(await self._writes.call(lua.REDELIVER, args))

    async def purge(self, before: float, limit: int) -> int:
        if limit <= 0:
            return 0
        return int(await self._writes.call(lua.PURGE, [self._prefix, repr(before), limit]))

    async def compact(self) -> None:
        """Nothing to do: a purged job's keys are deleted, and Redis frees their memory."""

    async def counts(self) -> dict[JobState, int]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for state in JobState:
                pipe.zcard(self._key("created", state.value))
            sizes = await pipe.execute()
        return dict(zip(JobState, map(int, sizes), strict=True))

    async def ping(self) -> None:
        await self._redis.set(self._key("ping"), b"1", ex=PING_EXPIRY)

    async def close(self) -> None:
        await self._writes.close()
        await self._redis.aclose(close_connection_pool=True)


def _flat(fields: Fields) -> list[str | bytes]:
    return [item for name, value in fields.items() for item in (name, value)]


def _small_job(values: Sequence[bytes | None]) -> Job | None:
    stored = {name: v for name, v in zip(SMALL_FIELDS, values, strict=True) if v is not None}
    return decode_job(stored) if stored else None
