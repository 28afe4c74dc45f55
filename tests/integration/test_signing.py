"""Signed callbacks as a receiver sees them, verified by the `standardwebhooks` package."""

from __future__ import annotations

import base64

from standardwebhooks import Webhook

from atkproxy.auth import create_auth
from atkproxy.auth.config import CallbackAuthSettings
from atkproxy.callback import Deliverer, callback_client
from atkproxy.demo.receiver import Received
from atkproxy.jobs import AtkStatus, Job, JobState, UpstreamRequest, UpstreamResult
from atkproxy.resolver import policy_for

from .conftest import ProxyFactory, Receiver, ServerFactory, proxy_settings, start_app
from .support import ASYNC, Echo

OLD = "whsec_" + base64.b64encode(b"old-secret-bytes-0123456789").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-bytes-0123456789").decode()


def headers_of(got: Received) -> dict[str, str]:
    return {k.lower(): v for k, v in got.headers.items()}


async def test_a_callback_signed_with_old_and_new_secret_verifies_with_either(
    aiohttp_server: ServerFactory, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    upstream = await start_app(aiohttp_server, Echo().app)
    proxy = await make_proxy(upstream, {"callback": {"signing": {"secrets": [OLD, NEW]}}})
    callback = {**ASYNC, "X-ATK-Callback": receiver.url}
    async with proxy.post("/orders", json={"n": 1}, headers=callback) as r:
        assert r.status == 202
        job_id = r.headers["X-ATK-Job"]
    got = await receiver.next()
    seen = headers_of(got)
    assert seen["webhook-id"] == job_id == seen["x-atk-job"]
    for secret in (OLD, NEW):
        Webhook(secret).verify(got.body, seen, json_parse=False)


async def test_unsigned_without_secrets(
    aiohttp_server: ServerFactory, receiver: Receiver, make_proxy: ProxyFactory
) -> None:
    upstream = await start_app(aiohttp_server, Echo().app)
    proxy = await make_proxy(upstream)
    async with proxy.post("/orders", json={}, headers={**ASYNC, "X-ATK-Callback": receiver.url}):
        pass
    got = await receiver.next()
    assert not {"webhook-id", "webhook-signature"} & set(headers_of(got))


async def test_every_attempt_of_one_callback_has_the_same_id(receiver: Receiver) -> None:
    settings = proxy_settings("http://127.0.0.1:1", {"callback": {"signing": {"secrets": [NEW]}}})
    result = UpstreamResult(200, [("Content-Type", "application/json")], b'{"id":"i-1"}')
    job = Job(id="job-7", instance_id="i-1", method="POST", path_qs="/orders",
              callback_url=receiver.url,
              request=UpstreamRequest("POST", "/orders", [], b"{}"),
              state=JobState.DELIVERING, result=result, status=AtkStatus.COMPLETED)  # fmt: skip
    async with callback_client(5.0, policy_for(settings)) as client:
        auth = create_auth(CallbackAuthSettings())
        deliverer = Deliverer(client, auth, settings.callback.signing.keys)
        assert [(await deliverer.send(job, n))[0] for n in (1, 2)] == [200, 200]
    first, second = headers_of(await receiver.next()), headers_of(await receiver.next())
    assert first["webhook-id"] == second["webhook-id"] == "job-7"
    assert (first["x-atk-attempt"], second["x-atk-attempt"]) == ("1", "2")
    for seen in (first, second):
        Webhook(NEW).verify(b'{"id":"i-1"}', seen)
