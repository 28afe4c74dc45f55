"""Forwarding headers for the upstream (pure): trusted from configured peers only, as uvicorn does.

`X-Forwarded-*`, `Forwarded` and `X-Real-IP` say who the client is and how it came; a client
can write anything there. They are kept only when the peer that connected to the proxy is in
`listen.trusted_proxies` (a load balancer, an ingress): then the peer is appended to
`X-Forwarded-For` (and to `Forwarded`, when the peer sent one), and its `X-Forwarded-Proto`
and `X-Forwarded-Host` stand. From any other peer they are all dropped, and the upstream
gets the proxy's own: `X-Forwarded-For: <peer>`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from multidict import CIMultiDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
CLIENT_SET = ("forwarded", "x-real-ip")  # besides every x-forwarded-* name


@lru_cache(maxsize=1024)
def _address(peer: str) -> Address | None:
    try:
        address = ipaddress.ip_address(peer.split("%", 1)[0])  # an IPv6 zone is no part of it
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # a dual-stack socket's view of IPv4
    return mapped or address


def is_trusted(peer: str | None, trusted: Sequence[Network]) -> bool:
    if peer is None or not trusted:
        return False
    address = _address(peer)
    return address is not None and any(address in network for network in trusted)


def client_set(name: str) -> bool:
    """A header only the client set: kept from trusted peers only."""
    lower = name.lower()
    return lower.startswith("x-forwarded-") or lower in CLIENT_SET


def appended(
    headers: CIMultiDict[str], peer: str, scheme: str, host: str | None
) -> CIMultiDict[str]:
    """A trusted peer's chain, with the peer added at its end."""
    headers["X-Forwarded-For"] = ", ".join([*headers.popall("X-Forwarded-For", []), peer])
    headers.setdefault("X-Forwarded-Proto", scheme)
    if host:
        headers.setdefault("X-Forwarded-Host", host)
    if "Forwarded" in headers:
        element = f"for={_node(peer)};proto={scheme}" + (f";host={_quoted(host)}" if host else "")
        headers["Forwarded"] = ", ".join([*headers.popall("Forwarded"), element])
    return headers


def _node(peer: str) -> str:
    """RFC 7239 node: an IPv6 address in brackets, quoted."""
    return f'"[{peer}]"' if ":" in peer else peer


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
