"""Callback authentication end to end: real receivers, a real OAuth2 token server, the proxy.

The token server is oauth2-mock-server (npm, tests/oauth/), steered through its own hooks by
tests/oauth/server.mjs. Without node or the package the OAuth tests fail under CI (and are
skipped, saying why, elsewhere): `cd tests/oauth && npm ci` installs it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from cryptography.fernet import Fernet
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr
from structlog.testing import capture_logs
from yarl import URL

from atkproxy.auth import (
    CallbackAuth,
    CallbackAuthError,
    CallbackAuthSettings,
    create_auth,
)
from atkproxy.callback import Deliverer, callback_client
from atkproxy.demo.receiver import Received
from atkproxy.destinations import Policy
from atkproxy.jobs import AtkStatus, Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.receivers import CallbackClient
from atkproxy.store.memory import MemoryStore
from atkproxy.store.sealed import SealedStore

from .conftest import ProxyFactory, Receiver, ServerFactory, start_app
from .support import ASYNC, Echo, wait_job

OAUTH_DIR = Path(__file__).resolve().parents[1] / "oauth"
INCOMING = [("Authorization", "Bearer incoming-user-token"), ("X-User-Token", "user-7")]
# what every callback carries besides authentication
ORDINARY = {"host", "content-length", "content-type", "accept", "accept-encoding", "user-agent",
            "x-atk-status", "x-atk-job", "x-atk-instance-id", "x-atk-upstream-status",
            "x-atk-attempt"}  # fmt: skip


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def make_job(callback_url: str, incoming: list[tuple[str, str]] | None = None) -> Job:
    headers = INCOMING if incoming is None else incoming
    result = UpstreamResult(200, [("Content-Type", "application/json")], b"{}")
    return Job(id=os.urandom(8).hex(), instance_id="i-1", callback_url=callback_url,
               method="POST", path_qs="/orders", due_at=0.0,
               request=UpstreamRequest("POST", "/orders", list(headers), b"{}"),
               state=JobState.DELIVERING, result=result, status=AtkStatus.COMPLETED)  # fmt: skip


def extra_headers(received: Received) -> dict[str, str]:
    """The headers beyond the ordinary ones: authentication and nothing else."""
    return {k.lower(): v for k, v in received.headers.items() if k.lower() not in ORDINARY}


class Sender:
    """The product's delivery, atkproxy.callback.Deliverer.send: apply the auth, POST, and on
    a 401 renew and retry once; the receiver's status, or the auth error raised."""

    def __init__(self, client: CallbackClient, auth: CallbackAuth) -> None:
        self._deliverer = Deliverer(client, auth)

    async def send(self, job: Job) -> int:
        status, _ = await self._deliverer.send(job, 1)
        return status


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def client() -> AsyncIterator[CallbackClient]:
    """The product's callback client, allowed to reach the receivers on 127.0.0.1."""
    async with callback_client(5.0, Policy.from_lists(["127.0.0.1/32"], [])) as client:
        yield client


async def deliver_one(
    config: dict[str, Any], receiver: Receiver, client: CallbackClient,
    incoming: list[tuple[str, str]] | None = None, query: str = "?tenant=a",
) -> Received:  # fmt: skip
    auth = create_auth(CallbackAuthSettings.model_validate(config))
    job = make_job(receiver.url + query, incoming)
    auth.capture(job.id, CIMultiDictProxy(CIMultiDict(job.request.headers)))
    try:
        assert await Sender(client, auth).send(job) == 200
    finally:
        await auth.close()
    return await receiver.next()


# --- the static modes, against a real receiver --------------------------------------------

STATIC = [
    ("none", {"type": "none"}, {}, {}),
    ("basic-encoded", {"type": "basic", "basic": "dXNlcjpwYXNz"},
     {"authorization": "Basic dXNlcjpwYXNz"}, {}),
    ("basic-user", {"type": "basic", "user": "ann", "password": "pä:ss w"},
     {"authorization": "Basic " + b64("ann:pä:ss w")}, {}),
    ("basic-both-user-wins", {"type": "basic", "basic": "b3RoZXI6eA==", "user": "ann",
                              "password": "pw"}, {"authorization": "Basic " + b64("ann:pw")}, {}),
    ("custom", {"type": "custom", "custom_name": "X-Api-Key", "custom_value": "k3y"},
     {"x-api-key": "k3y"}, {}),
    ("on-behalf", {"type": "on-behalf"}, {"authorization": "Bearer incoming-user-token"}, {}),
    ("on-behalf-named", {"type": "on-behalf", "on_behalf_name": "x-user-token"},
     {"x-user-token": "user-7"}, {}),
    ("query", {"type": "query", "query_name": "apikey", "query_value": "s3 cr&t=/"},
     {}, {"apikey": "s3 cr&t=/"}),
    ("oauth-static", {"type": "oauth", "access_token": "static-token"},
     {"authorization": "Bearer static-token"}, {}),
]  # fmt: skip


@pytest.mark.parametrize(("config", "headers", "query"), [c[1:] for c in STATIC],
                         ids=[c[0] for c in STATIC])  # fmt: skip
async def test_receiver_sees_exactly_the_mode_s_credentials(
    receiver: Receiver, client: CallbackClient,
    config: dict[str, Any], headers: dict[str, str], query: dict[str, str],
) -> None:  # fmt: skip
    received = await deliver_one(config, receiver, client)
    assert extra_headers(received) == headers
    assert received.query == {"tenant": "a", **query}


async def test_query_mode_replaces_a_parameter_of_the_same_name(
    receiver: Receiver, client: CallbackClient
) -> None:
    config = {"type": "query", "query_name": "apikey", "query_value": "real"}
    received = await deliver_one(config, receiver, client, query="?apikey=forged&x=1%202")
    assert received.query == {"x": "1 2", "apikey": "real"}


async def test_on_behalf_without_the_header_sends_none(
    receiver: Receiver, client: CallbackClient
) -> None:
    received = await deliver_one({"type": "on-behalf"}, receiver, client, incoming=[])
    assert extra_headers(received) == {}


@pytest.mark.parametrize("with_key", [True, False], ids=["secret-key", "no-key"])
async def test_on_behalf_after_a_restart_only_with_a_store_key(
    receiver: Receiver, client: CallbackClient, with_key: bool
) -> None:
    # the job as a restarted proxy reads it back from its store: the header is there only
    # when store.secret_key let it be kept (encrypted) at rest
    key = SecretStr(Fernet.generate_key().decode()) if with_key else None
    inner = MemoryStore()
    await SealedStore(inner, ["Authorization"], key).add(make_job(receiver.url))
    restarted = SealedStore(inner, ["Authorization"], key)  # a new process: nothing in memory
    [recovered] = await restarted.claim("restarted", [JobState.DELIVERING], 1.0, 31.0, 1)
    auth = create_auth(CallbackAuthSettings(type="on-behalf"))  # a fresh process: nothing captured
    assert await Sender(client, auth).send(recovered) == 200
    expected = {"authorization": "Bearer incoming-user-token"} if with_key else {}
    assert extra_headers(await receiver.next()) == expected


async def test_on_behalf_forget_drops_the_captured_value(
    receiver: Receiver, client: CallbackClient
) -> None:
    auth = create_auth(CallbackAuthSettings(type="on-behalf"))
    job = make_job(receiver.url, incoming=[])
    auth.capture(job.id, CIMultiDictProxy(CIMultiDict([("authorization", "Bearer t-1")])))
    auth.forget(job.id)
    assert await Sender(client, auth).send(job) == 200
    assert extra_headers(await receiver.next()) == {}


async def test_static_token_refused_is_not_retried(
    receiver: Receiver, client: CallbackClient
) -> None:
    receiver.respond_with = [401]
    auth = create_auth(CallbackAuthSettings.model_validate({"type": "oauth", "access_token": "s"}))
    assert await Sender(client, auth).send(make_job(receiver.url)) == 401
    assert len(receiver.received) == 1


# --- OAuth2 against oauth2-mock-server ----------------------------------------------------


def _unavailable(reason: str) -> NoReturn:
    message = f"{reason}: the OAuth2 tests need it; run `cd tests/oauth && npm ci` (Node >= 20.19)"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _first_line(process: subprocess.Popen[bytes], deadline: float) -> bytes:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=deadline):
            process.kill()
            pytest.fail(f"the OAuth2 token server did not start within {deadline}s")
    line = process.stdout.readline()
    if not line:
        assert process.stderr is not None
        pytest.fail(f"the OAuth2 token server failed: {process.stderr.read().decode()[-2000:]}")
    return line


@pytest.fixture(scope="module")
def token_server_urls() -> Iterator[dict[str, str]]:
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not installed")
    if not (OAUTH_DIR / "node_modules" / "oauth2-mock-server").is_dir():
        _unavailable("the npm package oauth2-mock-server is not installed")
    process = subprocess.Popen([node, "server.mjs"], cwd=OAUTH_DIR, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        yield json.loads(_first_line(process, deadline=30.0))
    finally:
        assert process.stdin is not None
        process.stdin.close()  # the server exits when its stdin closes
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class TokenServer:
    """The control side of tests/oauth/server.mjs."""

    def __init__(self, urls: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.token_url = urls["token_url"]
        self._control = URL(urls["control"])
        self._session = session

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._session.request(method, self._control / path, json=body) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def configure(self, expires_in: int | None = None,
                        clients: dict[str, str] | None = None) -> None:  # fmt: skip
        await self._call("PUT", "config", {"expires_in": expires_in, "clients": clients})

    async def answer(self, status: int, body: dict[str, Any], times: int = 1) -> None:
        """The next `times` token requests get this answer instead of a token."""
        await self._call("POST", "answer", {"status": status, "body": body, "times": times})

    async def requests(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = await self._call("GET", "requests")
        return seen

    async def issued(self) -> list[str]:
        requests = await self.requests()
        return [r["issued"]["access_token"] for r in requests if "access_token" in r["issued"]]


@pytest.fixture
async def tokens(token_server_urls: dict[str, str], session: aiohttp.ClientSession) -> TokenServer:
    server = TokenServer(token_server_urls, session)
    await server._call("POST", "reset")
    return server


CLIENT = {"cb-client": "cb-secret"}


def oauth(tokens: TokenServer, **more: Any) -> CallbackAuthSettings:
    config = {"type": "oauth", "token_url": tokens.token_url, **more}
    return CallbackAuthSettings.model_validate(config)


def client_credentials(tokens: TokenServer, **more: Any) -> CallbackAuthSettings:
    return oauth(tokens, client_id="cb-client", client_secret="cb-secret", **more)


@pytest.fixture
async def auths() -> AsyncIterator[list[CallbackAuth]]:
    made: list[CallbackAuth] = []
    yield made
    for auth in made:
        await auth.close()


@pytest.fixture
async def client_auth(tokens: TokenServer) -> AsyncIterator[CallbackAuth]:
    """The client-credentials mode against the token server (asks for a token only when used)."""
    auth = create_auth(client_credentials(tokens))
    yield auth
    await auth.close()


async def bearer_seen(receiver: Receiver) -> str:
    received = await receiver.next()
    assert set(extra_headers(received)) == {"authorization"}
    scheme, _, token = received.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
async def test_client_credentials_grant(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    auths: list[CallbackAuth], method: str,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    auth = create_auth(client_credentials(tokens, scope="callbacks", token_auth_method=method))
    auths.append(auth)
    sender = Sender(client, auth)
    for _ in range(3):
        assert await sender.send(make_job(receiver.url)) == 200
    seen = [await bearer_seen(receiver) for _ in range(3)]
    [request] = await tokens.requests()  # cached: one token for three callbacks
    assert seen == [request["issued"]["access_token"]] * 3
    assert request["body"]["grant_type"] == "client_credentials"
    assert request["body"]["scope"] == "callbacks"
    if method == "client_secret_basic":
        assert request["authorization"] == "Basic " + b64("cb-client:cb-secret")
        assert "client_secret" not in request["body"]
    else:
        assert request["body"]["client_secret"] == "cb-secret"


async def test_wrong_client_secret_fails_the_delivery_with_a_reason(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    auths: list[CallbackAuth],
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    auth = create_auth(oauth(tokens, client_id="cb-client", client_secret="wrong-secret"))
    auths.append(auth)
    with pytest.raises(CallbackAuthError) as caught:
        await Sender(client, auth).send(make_job(receiver.url))
    assert (
        str(caught.value)
        == "token endpoint refused the client_credentials grant: 401 invalid_client"
    )
    assert "wrong-secret" not in str(caught.value)
    assert receiver.received == []


async def test_refresh_token_grant_rotates_the_refresh_token(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    auths: list[CallbackAuth],
) -> None:  # fmt: skip
    auth = create_auth(oauth(tokens, refresh_token="rt-0", client_id="cb-client"))
    auths.append(auth)
    sender = Sender(client, auth)
    receiver.respond_with = [200, 401, 200, 401, 200]  # two renewals
    for _ in range(3):
        assert await sender.send(make_job(receiver.url)) == 200
    requests = await tokens.requests()
    assert [r["body"]["grant_type"] for r in requests] == ["refresh_token"] * 3
    sent = [r["body"]["refresh_token"] for r in requests]
    issued = [r["issued"]["refresh_token"] for r in requests]
    assert sent == ["rt-0", issued[0], issued[1]]  # each newly issued one replaces the old
    assert all(r["body"]["client_id"] == "cb-client" for r in requests)
    assert all("client_secret" not in r["body"] and not r["authorization"] for r in requests)
    first, second, third = await tokens.issued()
    seen = [await bearer_seen(receiver) for _ in range(5)]
    assert seen == [first, first, second, second, third]


async def test_token_is_renewed_before_it_expires(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth,
) -> None:  # fmt: skip
    await tokens.configure(expires_in=2, clients=CLIENT)
    sender = Sender(client, client_auth)
    assert await sender.send(make_job(receiver.url)) == 200
    first = await bearer_seen(receiver)
    deadline = time.monotonic() + 5
    while True:  # callbacks keep the first token until its renewal is due (within ~2 s)
        assert await sender.send(make_job(receiver.url)) == 200
        token = await bearer_seen(receiver)
        if token != first:
            break
        assert time.monotonic() < deadline, "the token was not renewed before it expired"
        await asyncio.sleep(0.1)
    assert await tokens.issued() == [first, token]


async def test_concurrent_deliveries_share_one_token_request(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    sender = Sender(client, client_auth)
    statuses = await asyncio.gather(*(sender.send(make_job(receiver.url)) for _ in range(20)))
    assert statuses == [200] * 20
    [token] = await tokens.issued()
    assert {await bearer_seen(receiver) for _ in range(20)} == {token}


async def test_401_renews_the_token_once_and_retries(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    receiver.respond_with = [401]
    assert await Sender(client, client_auth).send(make_job(receiver.url)) == 200
    first, second = await tokens.issued()
    assert [await bearer_seen(receiver), await bearer_seen(receiver)] == [first, second]


async def test_401_twice_is_a_failed_attempt_after_one_retry(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    receiver.respond_with = [401, 401]
    assert await Sender(client, client_auth).send(make_job(receiver.url)) == 401
    assert len(receiver.received) == 2
    assert len(await tokens.issued()) == 2


async def test_concurrent_401s_share_one_renewal(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    sender = Sender(client, client_auth)
    assert await sender.send(make_job(receiver.url)) == 200  # the first token, cached
    receiver.respond_with = [401] * 5
    statuses = await asyncio.gather(*(sender.send(make_job(receiver.url)) for _ in range(5)))
    assert statuses == [200] * 5
    assert len(await tokens.issued()) == 2


async def test_static_token_first_then_the_grant_after_a_401(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    auths: list[CallbackAuth],
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    auth = create_auth(client_credentials(tokens, access_token="static-1"))
    auths.append(auth)
    receiver.respond_with = [401]
    assert await Sender(client, auth).send(make_job(receiver.url)) == 200
    assert await bearer_seen(receiver) == "static-1"
    assert [await bearer_seen(receiver)] == await tokens.issued()


async def test_a_refused_issued_refresh_token_falls_back_to_client_credentials(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    issued = {"access_token": "a-1", "token_type": "Bearer", "refresh_token": "issued-rt"}
    await tokens.answer(200, issued)
    await tokens.answer(400, {"error": "invalid_grant"})
    receiver.respond_with = [200, 401, 200]
    sender = Sender(client, client_auth)
    assert await sender.send(make_job(receiver.url)) == 200
    assert await sender.send(make_job(receiver.url)) == 200
    requests = await tokens.requests()
    assert [r["body"]["grant_type"] for r in requests] == [
        "client_credentials", "refresh_token", "client_credentials"]  # fmt: skip
    assert requests[1]["body"]["refresh_token"] == "issued-rt"
    seen = [await bearer_seen(receiver) for _ in range(3)]
    assert seen == ["a-1", "a-1", requests[2]["issued"]["access_token"]]


@pytest.mark.parametrize(("status", "body", "reason"), [
    (503, {"error": "temporarily_unavailable"}, "refused the client_credentials grant: 503 "
                                                "temporarily_unavailable"),
    (400, {"error": "invalid_scope", "error_description": "no"}, "refused the client_credentials "
                                                               "grant: 400 invalid_scope"),
    (200, {"token_type": "Bearer"}, "answered 200 without an access_token"),
])  # fmt: skip
async def test_token_endpoint_error_fails_the_delivery_then_recovers(
    tokens: TokenServer, receiver: Receiver, client: CallbackClient,
    client_auth: CallbackAuth, status: int, body: dict[str, Any], reason: str,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    await tokens.answer(status, body)
    sender = Sender(client, client_auth)
    with pytest.raises(CallbackAuthError, match=reason):
        await sender.send(make_job(receiver.url))
    assert receiver.received == []
    assert await sender.send(make_job(receiver.url)) == 200  # the next attempt gets a token
    assert [await bearer_seen(receiver)] == await tokens.issued()


async def test_token_endpoint_down_fails_the_delivery_with_a_reason(
    receiver: Receiver, client: CallbackClient, auths: list[CallbackAuth],
    unused_tcp_port: int,
) -> None:  # fmt: skip
    down = f"http://127.0.0.1:{unused_tcp_port}/token"
    auth = create_auth(
        CallbackAuthSettings.model_validate(
            {"type": "oauth", "token_url": down, "client_id": "c", "client_secret": "s3cr3t"}
        )
    )
    auths.append(auth)
    sender = Sender(client, auth)
    jobs = [make_job(receiver.url) for _ in range(3)]
    results = await asyncio.gather(*(sender.send(j) for j in jobs), return_exceptions=True)
    for result in results:
        assert isinstance(result, CallbackAuthError)
        assert str(result) == "token endpoint unreachable: ClientConnectorError"
    assert receiver.received == []


# --- through the proxy ----------------------------------------------------------------------


@pytest.fixture
async def upstream(aiohttp_server: ServerFactory) -> str:
    return await start_app(aiohttp_server, Echo().app)


async def through_proxy(
    make_proxy: ProxyFactory, upstream: str, receiver: Receiver, auth: dict[str, Any],
    incoming: dict[str, str],
) -> tuple[TestClient[Any, Any], dict[str, Any], Received]:  # fmt: skip
    proxy = await make_proxy(upstream, {"callback": {"auth": auth}}, automatiko=False)
    headers = {**ASYNC, "X-ATK-Callback": receiver.url + "?tenant=a", **incoming}
    async with proxy.post("/orders", json={"n": 1}, headers=headers) as r:
        assert r.status == 202, await r.text()
        location = r.headers["Location"]
    # the job belongs to the credentials it was made with: they read it
    view = await wait_job(proxy, location, ("delivered", "dead"), headers=incoming)
    return proxy, view, await receiver.next()


# the same table as the direct deliveries above, now through a running proxy
@pytest.mark.parametrize(("auth", "headers", "query"), [c[1:] for c in STATIC],
                         ids=[c[0] for c in STATIC])  # fmt: skip
async def test_proxy_callback_carries_exactly_the_mode_s_credentials(
    make_proxy: ProxyFactory, upstream: str, receiver: Receiver,
    auth: dict[str, Any], headers: dict[str, str], query: dict[str, str],
) -> None:  # fmt: skip
    incoming = dict(INCOMING)
    _, view, received = await through_proxy(make_proxy, upstream, receiver, auth, incoming)
    assert view["state"] == "delivered"
    auth_headers = {k: v for k, v in extra_headers(received).items() if not k.startswith("x-atk-")}
    assert auth_headers == headers
    assert received.query == {"tenant": "a", **query}


async def test_proxy_oauth_client_credentials(
    make_proxy: ProxyFactory, upstream: str, receiver: Receiver, tokens: TokenServer
) -> None:
    await tokens.configure(clients=CLIENT)
    auth = {"type": "oauth", "token_url": tokens.token_url, "client_id": "cb-client",
            "client_secret": "cb-secret"}  # fmt: skip
    _, view, received = await through_proxy(make_proxy, upstream, receiver, auth, dict(INCOMING))
    assert view["state"] == "delivered"
    assert received.headers["Authorization"] == "Bearer " + (await tokens.issued())[0]


async def test_proxy_token_endpoint_failure_is_recorded_on_the_job(
    make_proxy: ProxyFactory, upstream: str, receiver: Receiver, tokens: TokenServer
) -> None:
    await tokens.configure(clients=CLIENT)
    await tokens.answer(503, {"error": "temporarily_unavailable"}, times=100)
    auth = {"type": "oauth", "token_url": tokens.token_url, "client_id": "cb-client",
            "client_secret": "cb-secret"}  # fmt: skip
    once = {"schedule": ["0s"]}  # one attempt, then dead
    config = {"callback": {"auth": auth, "retry": once}}
    proxy = await make_proxy(upstream, config, automatiko=False)
    headers = {**ASYNC, "X-ATK-Callback": receiver.url}
    async with proxy.post("/orders", json={"n": 1}, headers=headers) as r:
        assert r.status == 202
        location = r.headers["Location"]
    view = await wait_job(proxy, location, ("dead",))
    error = view["callback"]["attempts"][0]["error"]
    assert "token endpoint refused the client_credentials grant: 503" in error
    assert receiver.received == []
    async with proxy.get("/_atk/health") as r:  # the proxy carries on
        assert r.status == 200


SECRETS = {
    "basic": "c2VjcmV0LWJhc2ljLTE=", "password": "secret-password-2",
    "access_token": "secret-access-token-3", "client_secret": "cb-secret",
    "refresh_token": "secret-refresh-token-5", "custom_value": "secret-custom-6",
    "query_value": "secret-query-7",
}  # fmt: skip
ON_BEHALF = "Bearer secret-on-behalf-8"


@pytest.mark.parametrize("mode", ["oauth", "on-behalf", "query", "custom", "basic"])
async def test_no_secret_in_logs_or_the_job_api(
    make_proxy: ProxyFactory, upstream: str, receiver: Receiver, tokens: TokenServer,
    caplog: pytest.LogCaptureFixture, mode: str,
) -> None:  # fmt: skip
    await tokens.configure(clients=CLIENT)
    auth = {"type": mode, **SECRETS, "user": "ann", "client_id": "cb-client",
            "token_url": tokens.token_url, "custom_name": "X-Key", "query_name": "key"}  # fmt: skip
    caplog.set_level("DEBUG")
    with capture_logs() as logs:
        proxy, view, received = await through_proxy(
            make_proxy, upstream, receiver, auth, {"Authorization": ON_BEHALF}
        )
        async with proxy.get(f"/_atk/jobs/{view['job']}") as r:
            api = await r.text()
    assert view["state"] == "delivered"
    assert extra_headers(received) or received.query.get("key")  # the mode did authenticate
    assert {"job accepted", "callback delivered"} <= {entry["event"] for entry in logs}
    issued = await tokens.issued()
    # the receiver's own access log shows its query: it is the receiver's to keep
    proxy_lines = [r.getMessage() for r in caplog.records if "/callbacks?" not in r.getMessage()]
    shown = "\n".join([api, json.dumps(view), repr(logs), *proxy_lines])
    encoded = [b64("ann:" + SECRETS["password"]), b64("cb-client:cb-secret")]
    for secret in [*SECRETS.values(), ON_BEHALF.split()[1], *issued, *encoded]:
        assert secret not in shown
