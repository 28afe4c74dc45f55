"""Settings of callback authentication (`callback.auth.*`), checked at start.

Each mode names what it needs; a mode missing a key is a startup error that names that key
(and its Automatiko alias, so a team moving off Automatiko finds it under the name it knows).
Secrets are `SecretStr`: they print as `**********` in reprs, logs and validation errors.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from yarl import URL

AuthType = Literal["none", "basic", "oauth", "custom", "on-behalf", "query"]
TokenAuthMethod = Literal["client_secret_post", "client_secret_basic"]

PREFIX = "callback.auth."
AUTOMATIKO_PREFIX = "quarkus.automatiko.async.callback."

# atkproxy's key (under callback.auth.) -> Automatiko's property (under AUTOMATIKO_PREFIX).
# Automatiko has no query mode: auth-query-* follow its naming so one style works throughout.
AUTOMATIKO_NAMES: dict[str, str] = {
    "type": "auth-type",
    "basic": "auth-basic",
    "user": "auth-user",
    "password": "auth-password",
    "access_token": "auth-access-token",
    "client_id": "auth-client-id",
    "client_secret": "auth-client-secret",
    "refresh_token": "auth-refresh-token",
    "token_url": "auth-refresh-url",
    "scope": "auth-scope",
    "custom_name": "auth-custom-name",
    "custom_value": "auth-custom-value",
    "on_behalf_name": "auth-on-behalf-name",
    "query_name": "auth-query-name",
    "query_value": "auth-query-value",
    "any_destination": "auth-any-destination",
}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # an HTTP header name (RFC 9110)


def key_name(field: str) -> str:
    """`scope` -> `callback.auth.scope (quarkus.automatiko.async.callback.auth-scope)`"""
    alias = AUTOMATIKO_NAMES.get(field)
    return f"{PREFIX}{field}" + (f" ({AUTOMATIKO_PREFIX}{alias})" if alias else "")


class CallbackAuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    type: AuthType = "none"
    # basic: a pre-encoded base64 `user:password`, or user + password (these win when both)
    basic: SecretStr | None = None
    user: str | None = None
    password: SecretStr | None = None
    # oauth: a static bearer token, or one obtained from token_url
    access_token: SecretStr | None = None
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    scope: str | None = None
    token_auth_method: TokenAuthMethod = "client_secret_post"
    token_timeout: float = Field(10.0, gt=0)  # seconds for one token endpoint call
    refresh_leeway: float = Field(30.0, ge=0)  # renew this many seconds before expiry
    # custom: one header
    custom_name: str | None = None
    custom_value: SecretStr | None = None
    # on-behalf: a header of the incoming async request, copied onto its callback
    on_behalf_name: str = "Authorization"
    # query: one parameter appended to the callback URL
    query_name: str | None = None
    query_value: SecretStr | None = None
    # the credentials go to any permitted callback URL, not only to callback.destinations.allow
    any_destination: bool = False

    @field_validator("type", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        # Automatiko compares the type ignoring case, and calls an unset type `not-set`
        if isinstance(value, str):
            value = value.strip().lower()
            return "none" if value in ("", "not-set") else value
        return value

    @field_validator("custom_name", "on_behalf_name")
    @classmethod
    def _header_name(cls, value: str | None) -> str | None:
        if value is not None and not _TOKEN.match(value):
            raise ValueError("must be an HTTP header name")
        return value

    @field_validator("token_url")
    @classmethod
    def _absolute_http(cls, value: str | None) -> str | None:
        if value is not None:
            url = URL(value)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> CallbackAuthSettings:
        missing = MISSING[self.type](self)
        if missing:
            raise ValueError(f"callback.auth.type is '{self.type}' but {missing} is not set")
        return self

    # what a mode uses to get a token from token_url
    @property
    def grant(self) -> Literal["refresh_token", "client_credentials"] | None:
        if self.token_url is None:
            return None
        return "refresh_token" if self.refresh_token is not None else "client_credentials"


def _basic(s: CallbackAuthSettings) -> str | None:
    if s.basic is not None or (s.user is not None and s.password is not None):
        return None
    if s.user is not None:
        return key_name("password")
    return f"{key_name('basic')} or {key_name('user')} + {key_name('password')}"


def _oauth(s: CallbackAuthSettings) -> str | None:
    if s.access_token is None and s.token_url is None:
        return f"{key_name('access_token')} or {key_name('token_url')}"
    if s.grant == "client_credentials":
        if s.client_id is None:
            return f"{key_name('client_id')} (or {key_name('refresh_token')})"
        if s.client_secret is None:
            return key_name("client_secret")
    return None


def _custom(s: CallbackAuthSettings) -> str | None:
    if s.custom_name is None:
        return key_name("custom_name")
    return key_name("custom_value") if s.custom_value is None else None


def _query(s: CallbackAuthSettings) -> str | None:
    if not s.query_name:
        return key_name("query_name")
    return key_name("query_value") if s.query_value is None else None


def _nothing(s: CallbackAuthSettings) -> str | None:
    return None


MISSING = {
    "none": _nothing,
    "basic": _basic,
    "oauth": _oauth,
    "custom": _custom,
    "on-behalf": _nothing,
    "query": _query,
}
