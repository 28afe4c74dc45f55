"""The callback destination policy (pure): URL shapes and addresses, with and without rules."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from atkproxy.destinations import (
    MAX_URL,
    Policy,
    Refused,
    check_entries,
    denied_kind,
    embedded_ipv4,
    literal_address,
)


def policy(allow: list[str] | None = None, deny: list[str] | None = None) -> Policy:
    p = Policy.from_lists(allow or [], deny or [])
    p.protect("0.0.0.0", 8080, "the proxy")
    p.protect("127.0.0.1", 8081, "the upstream")
    p.protect("backend.local", 9000, "the upstream")
    return p


def refusal(p: Policy, url: str) -> str:
    with pytest.raises(Refused) as caught:
        p.check_url(url)
    return str(caught.value)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1/cb", "loopback address 127.0.0.1"),
        ("http://127.255.0.9:9/cb", "loopback address 127.255.0.9"),
        ("http://127.1/cb", "not in canonical form"),
        ("http://2130706433/cb", "not in canonical form"),
        ("http://0x7f000001/cb", "not in canonical form"),
        ("http://0x7f.0.0.1/cb", "not in canonical form"),
        ("http://0177.0.0.1/cb", "not in canonical form"),
        ("http://127.0.0.1./cb", "not in canonical form"),
        ("http://[::1]/cb", "loopback address ::1"),
        ("http://[0:0:0:0:0:0:0:1]/cb", "loopback address ::1"),
        ("http://[::ffff:127.0.0.1]/cb", "loopback address ::ffff:7f00:1"),
        ("http://[::ffff:169.254.169.254]/cb", "link-local address"),
        ("http://[64:ff9b::7f00:1]/cb", "loopback address 64:ff9b::7f00:1"),
        ("http://[2002:7f00:1::]/cb", "loopback address 2002:7f00:1::"),
        ("http://[::127.0.0.1]/cb", "loopback address ::7f00:1"),
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/cb", "loopback address"),  # Teredo
        ("http://169.254.169.254/latest/meta-data", "link-local address 169.254.169.254"),
        ("http://[fe80::1]/cb", "link-local address fe80::1"),
        ("http://[fe80::1%25eth0]/cb", "IPv6 address with a zone"),
        ("http://[::1/cb", "not a valid URL"),
        ("http://[]@/", "not a valid URL"),
        ("http://0.0.0.0/cb", "unspecified address 0.0.0.0"),
        ("http://0.1.2.3/cb", "unspecified address 0.1.2.3"),
        ("http://[::]/cb", "unspecified address ::"),
        ("http://224.0.0.1/cb", "multicast address 224.0.0.1"),
        ("http://[ff02::1]/cb", "multicast address ff02::1"),
        ("http://255.255.255.255/cb", "broadcast or reserved address 255.255.255.255"),
        ("http://[::1]:8080/cb", "the proxy's own address"),
        ("http://127.0.0.1:8081/cb", "the upstream's own address"),
        ("http://backend.local:9000/cb", "the proxy's or the upstream's own address"),
        ("http://BACKEND.local.:9000/cb", "the proxy's or the upstream's own address"),
        ("http://cb.example/" + "x" * MAX_URL, f"URL longer than {MAX_URL} characters"),
        ("http://user:pw@cb.example/cb", "user info in the URL"),
        ("http://user@cb.example/cb", "user info in the URL"),
        ("ftp://cb.example/cb", "not an absolute http or https URL"),
        ("/cb", "not an absolute http or https URL"),
        ("http://cb example/cb", "host is not a valid name"),
        ("http://cb.example%2Fx/cb", "host is not a valid name"),
    ],
)
def test_refused_urls(url: str, reason: str) -> None:
    assert reason in refusal(policy(), url)


@pytest.mark.parametrize(
    "url",
    [
        "http://cb.example/hook?x=1",
        "https://cb.example:8443/hook",
        "http://10.1.2.3/cb",  # RFC 1918: in-cluster receivers live there
        "http://100.64.0.1/cb",  # CGNAT
        "http://[fd00::1]/cb",  # ULA
        "http://8.8.8.8/cb",
        "http://127-0-0-1.nip.example/cb",  # a name: its addresses are checked when dialled
        "http://localhost/cb",  # idem
        "http://backend.local:9001/cb",  # the upstream's host, another port
        "http://exämple.example/cb",
        "http://cb.example/" + "x" * (MAX_URL - len("http://cb.example/")),
    ],
)
def test_permitted_urls(url: str) -> None:
    assert str(policy().check_url(url))


@pytest.mark.parametrize(
    ("allow", "deny", "url", "reason"),
    [
        (["127.0.0.1/32"], [], "http://127.0.0.2/cb", "not in callback.destinations.allow"),
        (["127.0.0.1/32"], [], "http://10.0.0.1/cb", "not in callback.destinations.allow"),
        (["127.0.0.1/32"], [], "http://127.0.0.1:8081/cb", "the upstream's own address"),
        (["127.0.0.0/8"], [], "http://127.0.0.9:8080/cb", "the proxy's own address"),
        (["*.example"], [], "http://cb.other/cb", "not in callback.destinations.allow"),
        (["*.example"], [], "http://example/cb", "not in callback.destinations.allow"),
        (["*.example"], [], "http://10.0.0.1/cb", "not in callback.destinations.allow"),
        (["*.example"], [], "http://127.0.0.1/cb", "not in callback.destinations.allow"),
        ([], ["10.0.0.0/8"], "http://10.9.9.9/cb", "is in callback.destinations.deny"),
        ([], ["*.internal"], "http://vault.internal/cb", "is in callback.destinations.deny"),
        (["*.internal"], ["vault.internal"], "http://vault.internal/", "destinations.deny"),
        (["0.0.0.0/0"], ["10.0.0.0/8"], "http://10.1.1.1/cb", "destinations.deny"),
    ],
)
def test_rules_refuse(allow: list[str], deny: list[str], url: str, reason: str) -> None:
    assert reason in refusal(policy(allow, deny), url)


@pytest.mark.parametrize(
    ("allow", "url"),
    [
        (["127.0.0.1/32"], "http://127.0.0.1:9000/cb"),  # an allowed CIDR lifts the default
        (["::1/128"], "http://[::1]:9000/cb"),
        (["169.254.0.0/16"], "http://169.254.169.254/cb"),
        (["*.example"], "http://a.b.example/cb"),
        (["cb.example"], "http://CB.example./cb"),
        (["10.0.0.0/8"], "http://receiver.svc/cb"),  # a name: checked against the CIDR when dialled
    ],
)
def test_rules_permit(allow: list[str], url: str) -> None:
    assert str(policy(allow).check_url(url))


A = ipaddress.ip_address


@pytest.mark.parametrize(
    ("allow", "address", "port", "name", "reason"),
    [
        ([], "127.0.0.1", 9000, "localhost", "loopback address 127.0.0.1"),
        ([], "::1", 9000, "localhost", "loopback address ::1"),
        (["localhost"], "127.0.0.1", 9000, "localhost", "loopback address"),  # names do not lift
        (["10.0.0.0/8"], "192.168.1.1", 9000, "rebound.example", "not in callback.destinations"),
        (["*.example"], "169.254.169.254", 80, "rebound.example", "link-local"),
        (["127.0.0.1/32"], "127.0.0.1", 9000, None, None),
        (["*.example"], "10.0.0.5", 9000, "cb.example", None),
        ([], "10.0.0.5", 9000, "cb.example", None),
        (["127.0.0.1/32"], "127.0.0.1", 8081, None, "the upstream's own address"),
        (["0.0.0.0/0"], "::ffff:127.0.0.1", 8081, None, "the upstream's own address"),
    ],
)
def test_check_address(
    allow: list[str], address: str, port: int, name: str | None, reason: str | None
) -> None:
    p = policy(allow)
    if reason is None:
        p.check_address(A(address), port, name)
        return
    with pytest.raises(Refused, match=reason):
        p.check_address(A(address), port, name)


def test_embedded_ipv4() -> None:
    assert embedded_ipv4(A("::ffff:10.0.0.1")) == [A("10.0.0.1")]
    assert embedded_ipv4(A("64:ff9b::a00:1")) == [A("10.0.0.1")]
    assert embedded_ipv4(A("2002:a00:1::1")) == [A("10.0.0.1")]
    assert embedded_ipv4(A("::1")) == []  # the loopback, not an IPv4-compatible form
    assert embedded_ipv4(A("2001:db8::1")) == []


def test_a_learnt_listener_is_protected_once() -> None:
    p = Policy()
    for _ in range(3):
        p.protect("127.0.0.1", 4000, "the proxy")
    assert len(p.endpoints) == 1


@pytest.mark.parametrize("entry", ["10.0.0.300", "127.1", "a b", "*.x y", "http://cb.example"])
def test_setting_entries_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a host name"):
        check_entries([entry])


def test_setting_entries_kept() -> None:
    entries = ["10.0.0.0/8", "fd00::/8", "127.0.0.1", "cb.example", "*.svc.cluster.local"]
    assert check_entries(entries) == entries


# -- any input: a URL or Refused, never another error -------------------------------------------

HOSTS = st.one_of(
    st.ip_addresses().map(lambda a: f"[{a}]" if a.version == 6 else str(a)),
    st.from_regex(r"[a-z0-9.\-]{1,20}", fullmatch=True),
    st.from_regex(r"(0x[0-9a-f]{1,8}|[0-9]{1,10})(\.[0-9]{1,3}){0,3}", fullmatch=True),
    st.text(max_size=20),
)


@given(
    scheme=st.sampled_from(["http", "https", "ftp", "HTTP", ""]),
    host=HOSTS,
    port=st.one_of(st.none(), st.integers(0, 70000)),
    rest=st.text(max_size=40),
)
def test_any_url_is_checked_or_refused(scheme: str, host: str, port: int | None, rest: str) -> None:
    url = f"{scheme}://{host}" + (f":{port}" if port is not None else "") + "/" + rest
    try:
        checked = policy().check_url(url)
    except Refused:
        return
    address = literal_address(checked.raw_host or "")
    assert address is None or denied_kind(address) is None  # a denied address never passes


@given(st.text(max_size=200))
def test_any_text_is_checked_or_refused(text: str) -> None:
    with contextlib.suppress(Refused):
        policy().check_url(text)


@given(st.ip_addresses())
def test_embedded_loopback_never_passes(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    with contextlib.suppress(Refused):
        policy().check_address(address, 9000)
        assert all(denied_kind(a) is None for a in [address, *embedded_ipv4(address)])
