"""Where a callback may go (pure): the URL's shape, and every address it reaches.

A callback URL is chosen by the client, so a proxy that dials it is a request forger inside the
cluster unless each destination passes this policy. It is applied twice: `check_url` when the
request arrives (nothing is resolved then), and `check_address` on every address actually
dialled (see dial.py), so a name that resolves elsewhere later (DNS rebinding) has no gap.

Order of the address checks, the first that refuses wins:
1. the proxy's own endpoints and the upstream's (always: they would take a forged request
   for one of their own clients'), matched on address and port;
2. `deny` CIDRs (and names, checked on the URL's host);
3. with an `allow` list: the address must be in an allowed CIDR or the name must be allowed;
4. loopback, link-local, unspecified, multicast, broadcast and reserved addresses, also when
   embedded in an IPv6 address, unless an allowed CIDR covers the address.
Private ranges (RFC 1918, ULA, CGNAT) pass: in-cluster receivers live there.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from yarl import URL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# WHATWG URL and inet_aton read a host whose last label is a number as an IPv4 address
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_COMPAT = ipaddress.IPv6Network("::/96")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_RESERVED = ipaddress.IPv4Network("240.0.0.0/4")  # 255.255.255.255, the broadcast, is in it


class Refused(ValueError):
    """A destination the policy refuses; the message names the reason, never the URL."""


@dataclass(frozen=True, slots=True)
class Rules:
    """Names (exact, or `*.` for any subdomain) and CIDRs, as in callback.destinations."""

    names: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Rules:
        names: list[str] = []
        networks: list[IPNetwork] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.append(entry.strip().lower().rstrip("."))
        return cls(tuple(names), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.networks)

    def has_name(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(
            host == n or (n.startswith("*.") and host.endswith(n[1:]) and host != n[2:])
            for n in self.names
        )

    def has_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Addresses in `network` on `port`: the proxy itself, or the upstream."""

    network: IPNetwork
    port: int
    what: str

    def covers(self, address: IPAddress, port: int) -> bool:
        return port == self.port and address in self.network


@dataclass(slots=True)
class Policy:
    allow: Rules = Rules()
    deny: Rules = Rules()
    endpoints: list[Endpoint] = field(default_factory=list)
    # host names that are the upstream's (or the proxy's), with their port
    protected_names: set[tuple[str, int]] = field(default_factory=set)

    @classmethod
    def from_lists(cls, allow: Sequence[str], deny: Sequence[str]) -> Policy:
        return cls(Rules.parse(allow), Rules.parse(deny))

    def protect(self, host: str, port: int, what: str) -> None:
        """Refuse `host:port` whatever is allowed; a wildcard host means every local address."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            self.protected_names.add((host.lower().rstrip("."), port))
            return
        if address.is_unspecified:
            for net in ("127.0.0.0/8", "0.0.0.0/8", "::1/128", "::/128"):
                self.endpoints.append(Endpoint(ipaddress.ip_network(net), port, what))
        network = ipaddress.ip_network(address)
        if not any(e.network == network and e.port == port for e in self.endpoints):
            self.endpoints.append(Endpoint(network, port, what))

    def check_url(self, value: str) -> URL:
        """The URL when its shape and (for an address) its destination pass; else Refused."""
        url = parse_url(value)
        host, port = url.raw_host or "", url_port(url)
        address = literal_address(host)
        if address is not None:
            self.check_address(address, port)
            return url
        name = host.lower().rstrip(".")
        if (name, port) in self.protected_names:
            raise Refused("the proxy's or the upstream's own address")
        if self.deny.has_name(name):
            raise Refused("host is in callback.destinations.deny")
        if self.allow and not self.allow.networks and not self.allow.has_name(name):
            raise Refused("host is not in callback.destinations.allow")
        return url

    def check_address(self, address: IPAddress, port: int, name: str | None = None) -> None:
        """Refused unless `address:port` (reached through host `name`) may be dialled."""
        candidates = [address, *embedded_ipv4(address)]
        for endpoint in self.endpoints:
            if any(endpoint.covers(a, port) for a in candidates):
                raise Refused(f"{endpoint.what}'s own address")
        if any(self.deny.has_address(a) for a in candidates):
            raise Refused(f"address {address} is in callback.destinations.deny")
        if name is not None and self.deny.has_name(name):
            raise Refused("host is in callback.destinations.deny")
        lifted = all(self.allow.has_address(a) for a in candidates)
        if self.allow and not lifted and not (name is not None and self.allow.has_name(name)):
            raise Refused(f"address {address} is not in callback.destinations.allow")
        if not lifted:
            for candidate in candidates:
                kind = denied_kind(candidate)
                if kind:
                    raise Refused(f"{kind} address {address}")


def parse_url(value: str) -> URL:
    """An absolute http(s) URL of at most MAX_URL characters, canonical host, no user info."""
    if len(value) > MAX_URL:
        raise Refused(f"URL longer than {MAX_URL} characters")
    try:
        url = URL(value.strip())
    except (ValueError, IndexError):  # yarl raises IndexError for an empty `[]@` host part
        raise Refused("not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.raw_host:
        raise Refused("not an absolute http or https URL")
    if url.raw_user is not None or url.raw_password is not None:
        raise Refused("user info in the URL; use callback.auth")
    check_host(url.raw_host)
    return url


def url_port(url: URL) -> int:
    return url.explicit_port or DEFAULT_PORTS[url.scheme]


def check_host(host: str) -> None:
    """A literal address in its one canonical spelling, or a DNS name: no numeric shortcuts."""
    if literal_address(host) is not None:
        return
    labels = host.lower().removesuffix(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        raise Refused("host is a numeric address not in canonical form (write a.b.c.d)")
    if not all(_LABEL.match(label) for label in labels):
        raise Refused("host is not a valid name")


def literal_address(host: str) -> IPAddress | None:
    """The address a host spells; strict: `127.1`, `0x7f.1` and `0177.0.0.1` are not addresses."""
    host = host.strip("[]") if host.startswith("[") else host
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            raise Refused("host is not a valid IPv6 address") from None
        if address.scope_id:  # a zone picks an interface: not for clients to choose
            raise Refused("host is an IPv6 address with a zone")
        return address
    try:
        return ipaddress.IPv4Address(host)  # rejects leading zeros and short forms
    except ValueError:
        return None


def embedded_ipv4(address: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, NAT64, 6to4, Teredo, compatible)."""
    if isinstance(address, ipaddress.IPv4Address):
        return []
    found = [address.ipv4_mapped, address.sixtofour]
    if address.teredo:
        found.extend(address.teredo)
    if address in _NAT64 or (address in _COMPAT and int(address) > 1):
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return [a for a in found if a is not None]


def denied_kind(address: IPAddress) -> str | None:
    """Why an address is denied by default, or None."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address in _THIS_NETWORK:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if isinstance(address, ipaddress.IPv4Address) and address in _RESERVED:
        return "broadcast or reserved"
    return None


def check_entries(entries: list[str]) -> list[str]:
    """Settings entries: each a CIDR, a name or a `*.` wildcard name; else ValueError."""
    for entry in entries:
        rules = Rules.parse([entry])
        for name in rules.names:
            try:
                check_host(name.removeprefix("*."))
            except Refused:
                raise ValueError(f"{entry!r} is neither a CIDR nor a host name") from None
    return entries
