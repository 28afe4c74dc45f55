"""Callback delivery: one attempt, through the one client that talks to receivers
(receivers.py, which dials through the destination policy: dial.py).

An attempt POSTs the upstream's answer as the sync call would have returned it, with
the X-ATK-* headers that say what it is, authenticated by the configured mode. No
redirect is followed, no cookie is kept. An answer of 2xx is a delivery; anything
else, or no answer within callback.timeout, is a failed attempt, which the engine
retries on the callback.retry schedule (see retry.py).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from ssl import SSLContext

from multidict import CIMultiDict
from yarl import URL

from .auth import CallbackAuth, CallbackAuthError, CallbackRequest
from .destinations import Policy
from .dial import CallbackClientError, DestinationRefused
from .jobs import Attempt, Job
from .receivers import CallbackClient
from .redact import without_urls
from .retry import retry_after_seconds
from .signing import signed_headers
from .tracing import trace_headers


def callback_client(
    timeout: float,
    policy: Policy | None = None,
    ssl: SSLContext | None = None,
    per_origin: int = 32,
) -> CallbackClient:
    """The callback client; the single place where connections to receivers are made.

    Every address it dials passes the destination policy (dial.py); https receivers are
    verified (`ssl`, from callback.tls; None: the system's CAs). `per_origin`: connections
    to one receiver at most (callback.max_inflight: no delivery waits for one).
    """
    return CallbackClient(timeout, policy or Policy(), ssl, per_origin=per_origin)


def callback_headers(job: Job, attempt: int) -> CIMultiDict[str]:
    assert job.result is not None and job.status is not None
    headers: CIMultiDict[str] = CIMultiDict()
    if job.result.content_type:
        headers["Content-Type"] = job.result.content_type
    headers["X-ATK-Status"] = job.status.value
    headers["X-ATK-Job"] = job.id
    headers["X-ATK-Instance-Id"] = job.instance_id
    headers["X-ATK-Upstream-Status"] = str(job.result.status)
    headers["X-ATK-Attempt"] = str(attempt)
    headers.extend(trace_headers(job.trace))  # the receiver's work joins the client's trace
    return headers


class Deliverer:
    def __init__(
        self,
        client: CallbackClient,
        auth: CallbackAuth,
        signing_keys: Sequence[bytes] = (),
    ) -> None:
        self._signing_keys = signing_keys
        self._client = client
        self._auth = auth

    async def deliver(self, job: Job, attempt: int) -> Attempt:
        """Attempt number `attempt` (with one renewal and retry on a 401), never raising."""
        started = time.time()
        status, error, retry_after = None, None, None
        try:
            status, asked = await self.send(job, attempt)
            retry_after = retry_after_seconds(asked, time.time())
        except CallbackAuthError as exc:
            error = f"callback authentication failed: {exc}"
        except (CallbackClientError, TimeoutError) as exc:
            error = f"callback failed: {describe(exc)}"
        except Exception as exc:  # any other failure is recorded too: a job never hangs
            error = f"callback failed: {exc.__class__.__name__}"
        return Attempt(started, status, error, round(time.time() - started, 6), retry_after)

    async def send(self, job: Job, attempt: int) -> tuple[int, str | None]:
        """The receiver's status and Retry-After; raises CallbackAuthError, CallbackClientError
        or TimeoutError."""
        answer = await self._send(job, attempt)
        if answer[0] == 401 and await self._auth.renew():
            answer = await self._send(job, attempt)
        return answer

    async def _send(self, job: Job, attempt: int) -> tuple[int, str | None]:
        assert job.callback_url is not None and job.result is not None
        request = CallbackRequest(URL(job.callback_url), callback_headers(job, attempt), job)
        if self._signing_keys:  # webhook-id: the job id, the same on every retry
            signed = signed_headers(job.id, int(time.time()), job.result.body, self._signing_keys)
            request.headers.update(signed)
        await self._auth.apply(request)
        return await self._client.post(request.url, list(request.headers.items()), job.result.body)


def describe(exc: BaseException) -> str:
    """What went wrong, safe to record: never the URL (its query may carry a credential)."""
    if isinstance(exc, TimeoutError):
        return "no answer within callback.timeout"
    if isinstance(exc, DestinationRefused):
        return str(exc)
    text = without_urls(str(exc))  # the client's texts have none; this keeps it so
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
