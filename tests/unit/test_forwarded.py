"""Forwarding headers (pure): the client's kept only from a trusted peer."""

from __future__ import annotations

import ipaddress

import pytest

from atkproxy.forwarded import is_trusted
from atkproxy.headers import forward_headers

Headers = list[tuple[str, str]]
LB = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
SPOOF: Headers = [
    ("X-Forwarded-For", "1.2.3.4"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "evil"),
    ("X-Forwarded-Port", "443"),
    ("x-forwarded-prefix", "/admin"),
    ("Forwarded", "for=1.2.3.4;proto=https"),
    ("X-Real-IP", "1.2.3.4"),
]


@pytest.mark.parametrize(
    ("peer", "trusted", "expected"),
    [
        ("10.1.2.3", LB, True),
        ("11.1.2.3", LB, False),
        ("::ffff:10.1.2.3", LB, True),  # IPv4 seen through a dual-stack socket
        ("fd12::1", LB, True),
        ("fe80::1%eth0", [ipaddress.ip_network("fe80::/10")], True),
        ("fe80::1%eth0", LB, False),
        ("10.1.2.3", [], False),
        (None, LB, False),
        ("not-an-address", LB, False),
        ("", LB, False),
    ],
)
def test_is_trusted(
    peer: str | None, trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network], expected: bool
) -> None:
    assert is_trusted(peer, trusted) is expected


@pytest.mark.parametrize(
    ("given", "peer", "host", "expected"),
    [
        pytest.param(
            SPOOF, "203.0.113.9", "proxy",
            [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "http"),
             ("X-Forwarded-Host", "proxy")],
            id="untrusted-peer-all-replaced",
        ),
        pytest.param(
            [("A", "1"), *SPOOF], None, None,
            [("A", "1"), ("X-Forwarded-Proto", "http")],
            id="no-peer-all-dropped",
        ),
        pytest.param(
            [("X-Forwarded-For", "1.1.1.1"), ("x-forwarded-for", "2.2.2.2, 3.3.3.3")],
            "10.0.0.9", None,
            [("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9"),
             ("X-Forwarded-Proto", "http")],
            id="trusted-chain-appended",
        ),
        pytest.param(
            SPOOF, "10.0.0.9", "proxy",
            [("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil"),
             ("X-Forwarded-Port", "443"), ("x-forwarded-prefix", "/admin"),
             ("X-Real-IP", "1.2.3.4"), ("X-Forwarded-For", "1.2.3.4, 10.0.0.9"),
             ("Forwarded", 'for=1.2.3.4;proto=https, for=10.0.0.9;proto=http;host="proxy"')],
            id="trusted-kept-and-appended",
        ),
        pytest.param(
            [("Forwarded", "for=a"), ("Forwarded", "for=b")], "fd00::1", 'h"x',
            [("X-Forwarded-For", "fd00::1"), ("X-Forwarded-Proto", "http"),
             ("X-Forwarded-Host", 'h"x'),
             ("Forwarded", 'for=a, for=b, for="[fd00::1]";proto=http;host="h\\"x"')],
            id="trusted-forwarded-ipv6-quoted",
        ),
        pytest.param(
            [("A", "1")], "10.0.0.9", "proxy",
            [("A", "1"), ("X-Forwarded-For", "10.0.0.9"), ("X-Forwarded-Proto", "http"),
             ("X-Forwarded-Host", "proxy")],
            id="trusted-without-headers-adds-own",
        ),
    ],
)  # fmt: skip
def test_forwarding(given: Headers, peer: str | None, host: str | None, expected: Headers) -> None:
    assert forward_headers(given, peer, "http", host, LB) == expected
