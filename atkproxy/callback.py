"""Callback delivery: the one client that talks to callback receivers.

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

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .auth import CallbackAuth, CallbackAuthError, CallbackRequest
from .destinations import Policy
from .jobs import Attempt, Job
from .redact import without_urls
from .resolver import GuardedResolver, literal_guard, refusal
from .retry import retry_after_seconds
from .signing import signed_headers
from .tracing import trace_headers


def callback_session(
    timeout: float, policy: Policy | None = None, ssl: SSLContext | None = None
) -> aiohttp.ClientSession:
    """The callback client; the single place where connections to receivers are made.

    Every address it dials passes the destination policy (resolver.py); https receivers
    are verified (`ssl`, from callback.tls; None: the system's CAs).
    """
    policy = policy or Policy()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=GuardedResolver(policy), ssl=ssl or True),
        trace_configs=[literal_guard(policy)],
        timeout=aiohttp.ClientTimeout(total=timeout),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("Content-Type",),
    )


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
        session: aiohttp.ClientSession,
        auth: CallbackAuth,
        signing_keys: Sequence[bytes] = (),
    ) -> None:
        self._signing_keys = signing_keys
        self._session = session
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
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"callback failed: {describe(exc)}"
        except Exception as exc:  # any other failure is recorded too: a job never hangs
            error = f"callback failed: {exc.__class__.__name__}"
        return Attempt(started, status, error, round(time.time() - started, 6), retry_after)

    async def send(self, job: Job, attempt: int) -> tuple[int, str | None]:
        """The receiver's status and Retry-After; raises CallbackAuthError or aiohttp's errors."""
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
        async with self._session.post(
            request.url, headers=request.headers, data=job.result.body, allow_redirects=False
        ) as response:
            # The status line decides; the receiver's body is not read (it could be endless).
            return response.status, response.headers.get("Retry-After")


def describe(exc: BaseException) -> str:
    """What went wrong, safe to record: never the URL (its query may carry a credential)."""
    if isinstance(exc, TimeoutError):
        return "no answer within callback.timeout"
    refused = refusal(exc)
    if refused is not None:
        return str(refused)
    if isinstance(exc, aiohttp.InvalidURL):
        return "InvalidURL"
    text = without_urls(str(exc))  # aiohttp puts the URL in some texts (ClientResponseError)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__
