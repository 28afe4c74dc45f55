"""callback.auth settings: what each mode needs, named when missing; secrets never shown."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from atkproxy.auth import CallbackAuthSettings, describe

AUTO = "quarkus.automatiko.async.callback."

MISSING = [
    ("basic-nothing", {"type": "basic"}, ["callback.auth.basic", "callback.auth.user",
                                         "callback.auth.password", AUTO + "auth-basic"]),
    ("basic-user-only", {"type": "basic", "user": "ann"}, ["callback.auth.password",
                                                           AUTO + "auth-password"]),
    ("oauth-nothing", {"type": "oauth"}, ["callback.auth.access_token", "callback.auth.token_url",
                                          AUTO + "auth-refresh-url"]),
    ("oauth-url-only", {"type": "oauth", "token_url": "https://idp/t"},
     ["callback.auth.client_id", "callback.auth.refresh_token"]),
    ("oauth-no-secret", {"type": "oauth", "token_url": "https://idp/t", "client_id": "c"},
     ["callback.auth.client_secret", AUTO + "auth-client-secret"]),
    ("custom-nothing", {"type": "custom"},
     ["callback.auth.custom_name", AUTO + "auth-custom-name"]),
    ("custom-no-value", {"type": "custom", "custom_name": "X-Key"}, ["callback.auth.custom_value"]),
    ("query-nothing", {"type": "query"}, ["callback.auth.query_name"]),
    ("query-no-value", {"type": "query", "query_name": "k"}, ["callback.auth.query_value"]),
]  # fmt: skip


@pytest.mark.parametrize(("config", "named"), [c[1:] for c in MISSING],
                         ids=[c[0] for c in MISSING])  # fmt: skip
def test_a_mode_missing_what_it_needs_names_the_key(
    config: dict[str, Any], named: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        CallbackAuthSettings.model_validate(config)
    message = str(caught.value)
    assert f"callback.auth.type is '{config['type']}'" in message
    for key in named:
        assert key in message


VALID = [
    ("none", {}),
    ("basic-encoded", {"type": "basic", "basic": "YTpi"}),
    ("basic-user", {"type": "basic", "user": "a", "password": "b"}),
    ("oauth-static", {"type": "oauth", "access_token": "t"}),
    ("oauth-client", {"type": "oauth", "token_url": "https://idp/t", "client_id": "c",
                      "client_secret": "s"}),
    ("oauth-refresh", {"type": "oauth", "token_url": "http://idp/t", "refresh_token": "r"}),
    ("custom", {"type": "custom", "custom_name": "X-Key", "custom_value": ""}),
    ("on-behalf", {"type": "on-behalf"}),
    ("query", {"type": "query", "query_name": "k", "query_value": "v"}),
    ("upper-case-type", {"type": "BASIC", "basic": "YTpi"}),
    ("automatiko-not-set", {"type": "not-set"}),
]  # fmt: skip


@pytest.mark.parametrize("config", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_complete_modes_are_accepted(config: dict[str, Any]) -> None:
    CallbackAuthSettings.model_validate(config)


@pytest.mark.parametrize(("config", "error"), [
    ({"type": "kerberos"}, "type"),
    ({"type": "custom", "custom_name": "X Key", "custom_value": "v"}, "custom_name"),
    ({"type": "on-behalf", "on_behalf_name": "Auth:"}, "on_behalf_name"),
    ({"type": "oauth", "token_url": "ftp://idp/t", "refresh_token": "r"}, "token_url"),
    ({"type": "oauth", "token_url": "/token", "refresh_token": "r"}, "token_url"),
    ({"type": "oauth", "access_token": "t", "token_auth_method": "private_key_jwt"},
     "token_auth_method"),
    ({"password_typo": "x"}, "password_typo"),
])  # fmt: skip
def test_malformed_values_are_refused_by_key(config: dict[str, Any], error: str) -> None:
    with pytest.raises(ValidationError) as caught:
        CallbackAuthSettings.model_validate(config)
    assert error in {str(part) for e in caught.value.errors() for part in e["loc"]}


SECRETS = {"basic": "c2VjcmV0LTE=", "password": "secret-2", "access_token": "secret-3",
           "client_secret": "secret-4", "refresh_token": "secret-5", "custom_value": "secret-6",
           "query_value": "secret-7"}  # fmt: skip


def test_secrets_are_never_shown() -> None:
    settings = CallbackAuthSettings.model_validate({"type": "oauth", **SECRETS, "user": "ann"})
    shown = [repr(settings), str(settings), settings.model_dump_json(), describe(settings),
             str(settings.model_dump())]  # fmt: skip
    for secret in SECRETS.values():
        assert all(secret not in text for text in shown)


def test_a_validation_error_does_not_echo_a_secret() -> None:
    with pytest.raises(ValidationError) as caught:
        CallbackAuthSettings.model_validate({"type": "query", "query_name": "k",
                                             "query_value": ["secret-in-a-list"]})  # fmt: skip
    assert "secret-in-a-list" not in str(caught.value)


@pytest.mark.parametrize(("config", "line"), [
    ({}, "none: no authentication"),
    ({"type": "basic", "user": "ann", "password": "p"}, "basic: user 'ann'"),
    ({"type": "basic", "basic": "YTpi"}, "basic: pre-encoded credentials"),
    ({"type": "oauth", "access_token": "t"}, "oauth: static access token"),
    ({"type": "oauth", "token_url": "https://idp/t", "client_id": "c", "client_secret": "s",
      "scope": "cb"}, "oauth: client credentials grant at https://idp/t scope 'cb'"),
    ({"type": "oauth", "token_url": "https://idp/t", "refresh_token": "r", "access_token": "t"},
     "oauth: static access token, then refresh token grant at https://idp/t"),
    ({"type": "custom", "custom_name": "X-Key", "custom_value": "v"}, "custom: header X-Key"),
    ({"type": "on-behalf"}, "on-behalf: header Authorization of the incoming request"),
    ({"type": "query", "query_name": "k", "query_value": "v"}, "query: query parameter k"),
])  # fmt: skip
def test_describe(config: dict[str, Any], line: str) -> None:
    assert describe(CallbackAuthSettings.model_validate(config)) == line
