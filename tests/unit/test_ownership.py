"""The ownership rule (pure): digests of credential headers, operator precedence."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr

from atkproxy.ownership import (
    Ownership,
    is_operator,
    owner_digest,
    owner_key,
    ownership_for,
    same_owner,
)
from atkproxy.settings import Settings

KEY = owner_key(SecretStr("k"))
NAMES = ("Authorization", "Cookie", "Proxy-Authorization")
TOKEN = SecretStr("mgmt-token")


def headers(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def digest(*pairs: tuple[str, str]) -> str | None:
    return owner_digest(KEY, headers(*pairs), NAMES)


def test_no_credentials_no_owner() -> None:
    assert digest(("X-Api-Key", "k"), ("Accept", "*/*")) is None


@pytest.mark.parametrize(
    ("made_with", "read_with", "same"),
    [
        ([("Authorization", "Bearer a")], [("Authorization", "Bearer a")], True),
        ([("Authorization", "Bearer a")], [("authorization", "Bearer a")], True),
        ([("Authorization", "Bearer a")], [("Authorization", "Bearer b")], False),
        ([("Authorization", "Bearer a")], [("Authorization", "bearer a")], False),
        ([("Authorization", "Bearer a")], [], False),
        ([("Authorization", "Bearer a")], [("Cookie", "Bearer a")], False),
        ([("Authorization", "a"), ("Cookie", "s=1")], [("Cookie", "s=1")], False),
        ([("Authorization", "a"), ("Cookie", "s")], [("Cookie", "s"), ("Authorization", "a")], True),  # noqa: E501
        ([("Cookie", "a=1"), ("Cookie", "b=2")], [("Cookie", "a=1"), ("Cookie", "b=2")], True),
        ([("Cookie", "a=1"), ("Cookie", "b=2")], [("Cookie", "a=1b=2")], False),
        ([("Cookie", "ab")], [("Cookie", "a"), ("Cookie", "b")], False),
        ([("Authorization", "\udcff\udcfe")], [("Authorization", "\udcff\udcfe")], True),
        ([("Authorization", "\udcff")], [("Authorization", "\udcfe")], False),
        ([("X-Other", "a")], [("X-Other", "b")], True),  # not a credential: no owner
    ],
)  # fmt: skip
def test_the_same_values_are_the_same_owner(
    made_with: list[tuple[str, str]], read_with: list[tuple[str, str]], same: bool
) -> None:
    assert same_owner(digest(*made_with), digest(*read_with)) is same


def test_the_configured_order_of_names_does_not_matter() -> None:
    creds = headers(("Authorization", "a"), ("Cookie", "c"))
    assert owner_digest(KEY, creds, NAMES) == owner_digest(KEY, creds, reversed(NAMES))


def test_the_key_decides() -> None:
    creds = headers(("Authorization", "a"))
    assert owner_digest(KEY, creds, NAMES) != owner_digest(owner_key(SecretStr("j")), creds, NAMES)


def test_the_key_is_derived_and_stable() -> None:
    assert owner_key(SecretStr("k")) == owner_key(SecretStr("k"))
    assert owner_key(SecretStr("k")) != b"k"
    assert owner_key(None, SecretStr("k")) == owner_key(SecretStr("k"))  # first one set wins
    assert owner_key(SecretStr("a"), SecretStr("b")) == owner_key(SecretStr("a"))
    assert owner_key(None, None) == owner_key()  # the process key: the same all along
    assert len(owner_key()) == 32 and owner_key() != owner_key(SecretStr(""))


@pytest.mark.parametrize(
    ("given", "operator"),
    [
        ([("Authorization", "Bearer mgmt-token")], True),
        ([("Authorization", "Bearer mgmt-toke")], False),
        ([("Authorization", "Bearer mgmt-token ")], False),
        ([("Authorization", "bearer mgmt-token")], False),
        ([("Authorization", "Basic mgmt-token")], False),
        ([("Cookie", "Bearer mgmt-token")], False),
        ([("Authorization", "\udcff")], False),
        ([], False),
    ],
)
def test_operator(given: list[tuple[str, str]], operator: bool) -> None:
    assert is_operator(headers(*given), TOKEN) is operator
    assert is_operator(headers(*given), None) is False  # no token, no operator


def test_may_read() -> None:
    rule = Ownership(KEY, NAMES, TOKEN)
    alice = headers(("Authorization", "Basic YWxpY2U6cA=="))
    owner = rule.owner(alice)
    assert owner is not None
    assert rule.may_read(owner, alice)
    assert not rule.may_read(owner, headers(("Authorization", "Basic Ym9iOnA=")))
    assert not rule.may_read(owner, headers())
    assert rule.may_read(owner, headers(("Authorization", "Bearer mgmt-token")))
    assert rule.may_read(None, headers())  # made without credentials: the id is the key


def test_ownership_for_settings() -> None:
    settings = Settings.model_validate(
        {
            "store": {"protected_headers": ["X-Api-Key"]},
            "management": {"owner_key": "o", "token": "t"},
            "callback": {
                "auth": {"type": "on-behalf", "on_behalf_name": "X-User-Token"},
                "destinations": {"allow": ["example.com"]},
            },
        }
    )
    rule = ownership_for(settings)
    assert rule.names == ("X-Api-Key", "X-User-Token")
    assert rule.key == owner_key(SecretStr("o"))
    assert rule.token is not None and rule.token.get_secret_value() == "t"
