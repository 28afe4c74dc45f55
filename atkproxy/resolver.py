"""The destination policy as configured, with the proxy's own endpoints and the upstream's.

The policy is applied when a request arrives (accept.py) and on every address the callback
client dials (dial.py); what it protects is gathered here: the listeners (one on port 0 is
known only when a request comes in on it) and the upstream, by address and by name.
"""

from __future__ import annotations

import asyncio
import socket

from yarl import URL

from .destinations import Policy, url_port
from .settings import Settings


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
