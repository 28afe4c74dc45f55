"""The callback client's view of the network: every address it dials passes the policy.

`GuardedResolver` wraps a resolver and drops each resolved address the destination policy
refuses, so a name that resolves to a denied address at connect time (DNS rebinding) fails
there. aiohttp does not ask the resolver about a literal address; `literal_guard` checks
those as each request starts. Both raise `DestinationRefused`; `refusal` finds it again in
the error aiohttp wraps it in, so the attempt records "destination refused: <reason>".
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .destinations import Policy, Refused, literal_address, url_port
from .settings import Settings


class DestinationRefused(aiohttp.ClientConnectionError, OSError):
    """Raised at connect time; its text is the policy's reason, without the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"destination refused: {self.reason}"


class GuardedResolver(AbstractResolver):
    """`inner`'s answers, less every address the policy refuses; none left is an error."""

    def __init__(self, policy: Policy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        reason = "the name resolved to no address"
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer["host"].split("%")[0])
                self._policy.check_address(address, answer["port"], host)
            except (Refused, ValueError) as exc:
                reason = str(exc)
                continue
            kept.append(answer)
        if not kept:
            raise DestinationRefused(reason)
        return kept

    async def close(self) -> None:
        await self._inner.close()


def literal_guard(policy: Policy) -> aiohttp.TraceConfig:
    """A trace that checks a literal address host before its request is sent."""

    async def on_start(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        url = params.url
        try:
            address = literal_address(url.raw_host or "")
            if address is not None:
                policy.check_address(address, url_port(url))
        except Refused as exc:
            raise DestinationRefused(str(exc)) from None

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    return trace


def refusal(exc: BaseException) -> DestinationRefused | None:
    """The DestinationRefused behind an aiohttp error, if that is what it was."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DestinationRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__
    return None


def policy_for(settings: Settings) -> Policy:
    """The configured policy, with the proxy's listener and the upstream protected."""
    rules = settings.callback.destinations
    policy = Policy.from_lists(rules.allow, rules.deny)
    if settings.listen.port:
        policy.protect(settings.listen.host, settings.listen.port, "the proxy")
    own = settings.management.listen
    if own.port:  # the management API's own listener (listeners.py)
        policy.protect(own.host, own.port, "the proxy")
    upstream = URL(settings.upstream.url)
    policy.protect(upstream.raw_host or "", url_port(upstream), "the upstream")
    return policy


async def protect_named_endpoints(policy: Policy) -> None:
    """The addresses of an upstream given by name are protected like a literal address's.

    Resolved once, at start: a literal callback address is checked without resolving anything.
    """
    loop = asyncio.get_running_loop()
    for name, port in sorted(policy.protected_names):
        try:
            infos = await loop.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except OSError:  # not resolvable now: its name is still refused at accept
            continue
        for *_, sockaddr in infos:
            policy.protect(str(sockaddr[0]), port, "the upstream")


def note_listener(policy: Policy, request: web.BaseRequest) -> None:
    """The address a request came in on is the proxy's own (a port 0 listener is known late)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        policy.protect(str(sockname[0]), int(sockname[1]), "the proxy")
