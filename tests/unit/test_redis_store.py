"""What only the Redis store has to show: a shared server, its restarts, its failures.

The behaviour every store shares is in test_store.py (which runs against Redis too).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
import structlog
from aiohttp import web
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError, RedisError

from atkproxy.app import store_ctx
from atkproxy.jobs import JobState, UpstreamRequest
from atkproxy.keys import METRICS, SETTINGS, STORE
from atkproxy.metrics import MeasuredStore, Metrics
from atkproxy.settings import Settings
from atkproxy.sources import describe, load
from atkproxy.store import JobStore, LeaseLost, StoreUnavailable, open_store
from atkproxy.store.redis import too_old
from atkproxy.store.sealed import SealedStore
from tests.conftest import RedisServer, free_port, need_redis_server
from tests.unit.test_store import FULL_JOB, NOW, RESULT, finished, make_job

PASSWORD = "pä ss-w0rd"


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[JobStore]:
    store = await open_store(url, **options)
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def raw_client(url: str, password: str | None = None) -> AsyncIterator[Redis]:
    client = Redis.from_url(url, password=password)
    try:
        yield client
    finally:
        await client.aclose()


async def test_stores_with_other_prefixes_share_one_redis_without_seeing_each_other(
    redis_url: str,
) -> None:
    async with (
        opened(redis_url, redis_prefix="svc-a:") as a,
        opened(redis_url, redis_prefix="svc-b:") as b,
        raw_client(redis_url) as raw,
    ):
        await a.add(make_job("due"))
        await a.add(make_job("old", JobState.DEAD, updated_at=1.0))

        assert await b.get("due") is None
        assert await b.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10) == []
        assert await b.purge(NOW, 10) == 0
        assert sum((await b.counts()).values()) == 0
        assert (await a.counts())[JobState.DEAD] == 1
        await b.ping()
        keys = await raw.keys("*")
        assert keys and all(key.startswith((b"svc-a:", b"svc-b:")) for key in keys)


async def test_jobs_acknowledged_before_a_kill_9_are_there_after_the_restart(
    own_redis_server: RedisServer,
) -> None:
    jobs = [make_job(f"job-{n}") for n in range(30)]
    async with opened(own_redis_server.url) as store:
        await asyncio.gather(*(store.add(job) for job in jobs))
        await store.add(FULL_JOB)
        [claimed] = await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 1)
        done = finished(claimed)
        await store.update(done, "me")

        own_redis_server.stop()  # SIGKILL: only what the AOF holds comes back
        own_redis_server.start()

        # the same store: no re-opening; Redis lost its script cache too
        expected = [(done if job.id == claimed.id else job).light() for job in jobs]
        assert [await store.get(job.id) for job in jobs] == expected
        assert await store.result(claimed.id) == RESULT
        assert await store.get(FULL_JOB.id) == FULL_JOB.light()
        assert len(await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 100)) == 30


STORE_CALLS = {
    "ping": lambda store: store.ping(),
    "add": lambda store: store.add(make_job("b")),
    "get": lambda store: store.get("a"),
    "claim": lambda store: store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10),
    "counts": lambda store: store.counts(),
    "page": lambda store: store.page(None, 10, None),
}


async def test_calls_fail_while_redis_is_down_and_work_again_without_reopening(
    own_redis_server: RedisServer,
) -> None:
    async with opened(own_redis_server.url) as store:
        await store.add(make_job("a"))
        own_redis_server.stop()

        started = time.monotonic()
        for name, call in STORE_CALLS.items():
            with pytest.raises(RedisError):
                await call(store)
                pytest.fail(f"{name} did not fail")
        assert time.monotonic() - started < 5  # refused at once, not after long timeouts

        own_redis_server.start()
        for call in STORE_CALLS.values():
            await call(store)
        for job_id in ("a", "b"):  # added before and after, both claimed by the call above
            assert await store.get(job_id) == make_job(job_id).leased("me", NOW + 30).light()


async def test_two_clients_racing_for_the_same_jobs_never_both_own_one(redis_url: str) -> None:
    async with opened(redis_url) as one, opened(redis_url) as two:
        await asyncio.gather(*(one.add(make_job(f"job-{n}")) for n in range(100)))

        for now in (NOW, NOW + 31):  # fresh jobs, then all leases expired at once
            batches = await asyncio.gather(
                *(
                    store.claim(f"{name}-{n}", [JobState.ACCEPTED], now, now + 30, 7)
                    for n in range(10)
                    for name, store in (("one", one), ("two", two))
                )
            )
            ids = [job.id for batch in batches for job in batch]
            assert sorted(ids) == sorted(f"job-{n}" for n in range(100))

        owned = [
            (await one.get(f"job-{n}")).lease_owner  # type: ignore[union-attr]
            for n in range(100)
        ]
        assert all(owner is not None for owner in owned)


async def test_racing_updates_only_the_lease_holder_wins(redis_url: str) -> None:
    async with opened(redis_url) as one, opened(redis_url) as two:
        await one.add(make_job("a"))
        [held] = await one.claim("one", [JobState.ACCEPTED], NOW, time.time() + 3600, 1)
        running = held.to(JobState.RUNNING)

        outcomes = await asyncio.gather(
            one.update(running, "one"),
            two.update(replace(running, reason="stolen"), "two"),
            two.update(replace(running, reason="stolen"), None),
            return_exceptions=True,
        )

        assert outcomes[0] is None
        assert all(isinstance(outcome, LeaseLost) for outcome in outcomes[1:])
        assert (await two.get("a")) == running.light()


async def test_out_of_memory_and_read_only_raise_and_write_nothing(
    own_redis_server: RedisServer,
) -> None:
    async with opened(own_redis_server.url) as store, raw_client(own_redis_server.url) as raw:
        await store.add(make_job("a"))

        await raw.config_set("maxmemory", 1)  # noeviction: every write is refused
        with pytest.raises(OutOfMemoryError):
            await store.add(make_job("b"))
        with pytest.raises(OutOfMemoryError):
            await store.ping()
        await raw.config_set("maxmemory", 0)

        await raw.replicaof("127.0.0.1", free_port())  # a replica of nobody: read only
        with pytest.raises(ReadOnlyError):
            await store.add(make_job("b"))
        with pytest.raises(ReadOnlyError):
            await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10)
        assert await store.get("a") == make_job("a").light()  # reads still work
        await raw.replicaof("NO", "ONE")

        assert await store.get("b") is None
        assert sum((await store.counts()).values()) == 1
        assert await store.add(make_job("b")) == make_job("b")


async def test_a_password_protected_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", None, "--requirepass", PASSWORD)
    server.start()
    try:
        with pytest.raises(StoreUnavailable) as refused:
            await open_store(server.url)
        async with opened(server.url, password=SecretStr(PASSWORD)) as store:
            await store.ping()
    finally:
        server.stop()
    message = str(refused.value)
    assert "\n" not in message and server.url in message and "auth" in message.lower()


async def test_an_unreachable_redis_is_unavailable_in_one_line() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    with pytest.raises(StoreUnavailable) as caught:
        await open_store(url)

    assert str(caught.value).startswith(f"store.url: cannot open {url}: ")
    assert "\n" not in str(caught.value)


SECRET = "Bearer s3cret-token"


async def test_the_proxy_seals_credentials_before_they_reach_redis(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", None, "--requirepass", PASSWORD)
    server.start()
    settings = Settings.model_validate(
        {
            "store": {
                "url": server.url,
                "password": PASSWORD,
                "redis_prefix": "sealed:",
                "secret_key": Fernet.generate_key().decode(),
            }
        }
    )
    app = web.Application()
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    context = store_ctx(app)
    try:
        await anext(context)
        assert isinstance(cast(MeasuredStore, app[STORE]).inner, SealedStore)
        headers = [("Authorization", SECRET), ("Accept", "text/plain")]
        job = replace(FULL_JOB, request=UpstreamRequest("POST", "/orders", headers, b"{}"))
        await app[STORE].add(job)
        async with raw_client(server.url, PASSWORD) as raw:
            stored = await raw.hgetall("sealed:job:" + job.id)
    finally:
        await anext(context, None)
        server.stop()
    assert b"fernet:" in stored[b"request"]
    assert all(SECRET.encode() not in value for value in stored.values())


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("redis://127.0.0.1:6379/0", True),
        ("rediss://redis.example:6380/2", True),
        ("redis://ann@redis:6379/0", True),  # an ACL user; the password comes apart
        ("redis://:hunter2@redis:6379/0", False),
        ("rediss://ann:hunter2@redis:6380/0", False),
        ("redis://redis:6379/0?password=hunter2", False),
        ("postgres://redis/0", False),
    ],
)
def test_store_urls_for_redis(url: str, accepted: bool) -> None:
    try:
        Settings.model_validate({"store": {"url": url}})
    except ValidationError as exc:
        assert not accepted
        assert "store.url" in describe(exc)
        assert "hunter2" not in describe(exc)  # the text a user sees
    else:
        assert accepted


def test_redis_password_from_a_file_and_the_default_prefix(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")

    settings, _ = load(None, {"ATKPROXY_STORE__PASSWORD_FILE": str(secret)})

    assert settings.store.password is not None
    assert settings.store.password.get_secret_value() == PASSWORD
    assert settings.store.redis_prefix == "atkproxy:"


async def test_close_hangs_up_every_connection(redis_url: str) -> None:
    async with raw_client(redis_url) as raw:
        store = await open_store(redis_url)
        await asyncio.gather(*(store.get(f"job-{n}") for n in range(5)), store.ping())
        assert len(await raw.client_list()) > 1

        await store.close()

        for _ in range(500):  # a poll with a deadline: Redis sees the hang-ups a moment later
            if len(await raw.client_list()) == 1:  # this one
                break
            await asyncio.sleep(0.01)
        assert len(await raw.client_list()) == 1


# -- TLS --------------------------------------------------------------------------------------


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey]
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if subject == issuer[0]:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    else:
        names = [x509.DNSName(subject)]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), False)
    return builder.sign(issuer[1], hashes.SHA256())


def _write_pem(path: Path, *items: x509.Certificate | ec.EllipticCurvePrivateKey) -> Path:
    pem = b""
    for item in items:
        if isinstance(item, x509.Certificate):
            pem += item.public_bytes(serialization.Encoding.PEM)
        else:
            pem += item.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
    path.write_bytes(pem)
    return path


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server answering TLS for the name `localhost`; its port and CA file."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("atkproxy test CA", ca_key, ("atkproxy test CA", ca_key))
    ca_file = _write_pem(tmp_path / "ca.pem", ca)
    cert_file = _write_pem(
        tmp_path / "cert.pem", _certificate("localhost", key, ("atkproxy test CA", ca_key))
    )
    key_file = _write_pem(tmp_path / "key.pem", key)
    tls_port = free_port()
    options = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert_file)]
    options += ["--tls-key-file", str(key_file), "--tls-ca-cert-file", str(ca_file)]
    server = RedisServer(tmp_path / "redis", None, *options, "--tls-auth-clients", "no")
    server.start()
    yield tls_port, ca_file
    server.stop()


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("rediss://localhost:{port}/0?ssl_ca_certs={ca}", True),
        ("rediss://localhost:{port}/0", False),  # the test CA is not in the system's store
        ("rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}", False),  # not the certificate's name
    ],
    ids=["trusted", "unknown-ca", "other-name"],
)
async def test_rediss_verifies_the_certificate(
    tls_redis: tuple[int, Path], url: str, trusted: bool
) -> None:
    port, ca_file = tls_redis
    url = url.format(port=port, ca=ca_file)
    if trusted:
        async with opened(url) as store:
            assert await store.add(make_job("a")) == make_job("a")
    else:
        with pytest.raises(StoreUnavailable, match="certificate"):
            await open_store(url)


async def test_a_page_leaves_out_jobs_that_moved_or_went_since_the_index_was_read(
    redis_url: str,
) -> None:
    async with opened(redis_url) as store, raw_client(redis_url) as raw:
        await store.add(make_job("dead", JobState.DEAD, due_at=None))
        await store.add(make_job("moved", JobState.DELIVERING, created_at=3000.0))
        # what a page would see if the job moved, or was purged, between its two reads
        await raw.zadd("atkproxy:created:dead", {"moved": 3000.0, "purged": 2000.0})

        jobs, cursor = await store.page(JobState.DEAD, 10, None)

        assert ([job.id for job in jobs], cursor) == (["dead"], None)


@pytest.mark.parametrize(
    ("ci", "outcome"),
    [("true", pytest.fail.Exception), ("", pytest.skip.Exception)],
    ids=["ci-fails", "elsewhere-skips"],
)
def test_a_missing_redis_server_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server there
    monkeypatch.setenv("CI", ci)

    with pytest.raises(outcome):
        need_redis_server()


async def test_writes_carry_on_after_redis_forgot_the_scripts(redis_url: str) -> None:
    async with opened(redis_url) as store, raw_client(redis_url) as raw:
        await store.add(make_job("a"))
        await raw.script_flush()

        # several at once, so that they go in one pipeline and are all sent again, in order
        outcomes = await asyncio.gather(
            store.add(make_job("b")),
            store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10),
            store.add(make_job("b")),
            return_exceptions=True,
        )

        assert outcomes[0] == make_job("b")
        assert sorted(job.id for job in outcomes[1]) == ["a", "b"]  # type: ignore[union-attr]
        assert isinstance(outcomes[2], KeyError)


@pytest.mark.parametrize(
    ("version", "old"),
    [("6.2.14", True), ("5.0.7", True), ("7.0.15", False), ("7.2.4", False), ("8.0", False)],
)
def test_redis_older_than_7_is_refused(version: str, old: bool) -> None:
    assert too_old(version) is old


async def test_settings_that_lose_jobs_are_warned_of(tmp_path: Path) -> None:
    options = ["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]
    server = RedisServer(tmp_path / "redis", None, *options)
    server.start()
    try:
        with structlog.testing.capture_logs() as logs:
            async with opened(server.url):
                pass
    finally:
        server.stop()
    warnings = " ".join(entry["event"] for entry in logs if entry["log_level"] == "warning")
    assert "appendonly off" in warnings
    assert "maxmemory-policy noeviction" in warnings


async def test_a_redis_fit_for_jobs_opens_without_warnings(redis_url: str) -> None:
    with structlog.testing.capture_logs() as logs:
        async with opened(redis_url):
            pass
    assert [entry for entry in logs if entry["log_level"] == "warning"] == []


async def test_a_claim_never_recreates_a_job_that_is_gone(redis_url: str) -> None:
    async with opened(redis_url) as store, raw_client(redis_url) as raw:
        await raw.zadd("atkproxy:due:accepted", {"ghost": 1.0})

        assert await store.claim("me", [JobState.ACCEPTED], NOW, NOW + 30, 10) == []
        assert await raw.exists("atkproxy:job:ghost") == 0
