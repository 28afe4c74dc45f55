"""The auth modes' pure parts and their behaviour on a CallbackRequest (no network)."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from typing import Any

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import SecretStr
from yarl import URL

import atkproxy.auth
from atkproxy.auth import CallbackAuthError, CallbackAuthSettings, CallbackRequest, create_auth
from atkproxy.auth.basic import BasicAuth, basic_credentials
from atkproxy.auth.custom import CustomHeaderAuth
from atkproxy.auth.none import NoAuth
from atkproxy.auth.oauth import OAuthAuth, TokenRefused, parse_token, renew_leeway, token_request
from atkproxy.auth.onbehalf import OnBehalfAuth
from atkproxy.auth.query import QueryAuth, with_parameter
from atkproxy.jobs import Job, UpstreamRequest

URL_ = "https://idp/token"


def settings(**config: Any) -> CallbackAuthSettings:
    return CallbackAuthSettings.model_validate(config)


def job(headers: list[tuple[str, str]] | None = None, job_id: str = "j-1") -> Job:
    return Job(id=job_id, instance_id="i-1", method="POST", path_qs="/w",
               callback_url="http://cb/x",
               request=UpstreamRequest("POST", "/w", headers or [], b""))  # fmt: skip


def request(url: str = "http://cb/x", headers: list[tuple[str, str]] | None = None,
            job_id: str = "j-1") -> CallbackRequest:  # fmt: skip
    return CallbackRequest(URL(url), CIMultiDict([("X-ATK-Status", "Completed")]),
                           job(headers, job_id))  # fmt: skip


def incoming(*pairs: tuple[str, str]) -> CIMultiDictProxy[str]:
    return CIMultiDictProxy(CIMultiDict(pairs))


def test_public_names() -> None:
    assert set(atkproxy.auth.__all__) == {
        "CallbackAuth", "CallbackAuthError", "CallbackAuthSettings", "CallbackRequest", "NoAuth",
        "create_auth", "describe"}  # fmt: skip


@pytest.mark.parametrize(("config", "kind"), [
    ({}, NoAuth),
    ({"type": "basic", "basic": "s3cret"}, BasicAuth),
    ({"type": "oauth", "access_token": "s3cret"}, OAuthAuth),
    ({"type": "oauth", "token_url": URL_, "client_id": "c", "client_secret": "s3cret"}, OAuthAuth),
    ({"type": "custom", "custom_name": "X-K", "custom_value": "s3cret"}, CustomHeaderAuth),
    ({"type": "on-behalf"}, OnBehalfAuth),
    ({"type": "query", "query_name": "k", "query_value": "s3cret"}, QueryAuth),
])  # fmt: skip
async def test_create_auth_picks_the_mode(config: dict[str, Any], kind: type) -> None:
    auth = create_auth(settings(**config))
    assert isinstance(auth, kind)
    assert "s3cret" not in repr(auth) + str(vars(auth))
    await auth.close()


# --- basic ---------------------------------------------------------------------------------


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(("config", "expected"), [
    ({"basic": "YTpi"}, "YTpi"),
    ({"user": "ann", "password": "pw"}, b64("ann:pw")),
    ({"user": "ann", "password": "p:w ä"}, b64("ann:p:w ä")),
    ({"user": "ann", "password": ""}, b64("ann:")),
    ({"basic": "b3RoZXI=", "user": "ann", "password": "pw"}, b64("ann:pw")),  # as Automatiko
    ({"basic": "YTpi", "user": "ann"}, "YTpi"),  # no password: the encoded value is used
])  # fmt: skip
def test_basic_credentials(config: dict[str, Any], expected: str) -> None:
    assert basic_credentials(settings(type="basic", **config)).get_secret_value() == expected


async def test_basic_replaces_any_authorization() -> None:
    req = request()
    req.headers["authorization"] = "Bearer leftover"
    await create_auth(settings(type="basic", basic="YTpi")).apply(req)
    assert req.headers.getall("Authorization") == ["Basic YTpi"]


# --- query ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "expected"), [
    ("http://h/cb", "http://h/cb?key=v%201%26"),
    ("http://h/cb?", "http://h/cb?key=v%201%26"),
    ("http://h/cb?a=1&b=x%20y&c=p+q&flag", "http://h/cb?a=1&b=x%20y&c=p+q&flag&key=v%201%26"),
    ("http://h/cb?key=forged&a=1&key=again", "http://h/cb?a=1&key=v%201%26"),
    ("http://h/cb?k%65y=forged", "http://h/cb?key=v%201%26"),
    ("http://u:p@h:81/a%20b/cb?a=1#frag", "http://u:p@h:81/a%20b/cb?a=1&key=v%201%26#frag"),
])  # fmt: skip
def test_with_parameter_keeps_the_rest_of_the_query(url: str, expected: str) -> None:
    assert str(with_parameter(URL(url), "key", "v 1&")) == expected


# --- custom and on-behalf ------------------------------------------------------------------


async def test_custom_header() -> None:
    req = request()
    await create_auth(settings(type="custom", custom_name="X-Api-Key", custom_value="k")).apply(req)
    assert req.headers["x-api-key"] == "k"


@pytest.mark.parametrize(("name", "sent", "expected"), [
    ("Authorization", [("authorization", "Bearer u")], "Bearer u"),
    ("x-user-token", [("X-USER-TOKEN", "t")], "t"),
    ("Authorization", [("X-Other", "o")], None),
])  # fmt: skip
async def test_on_behalf_copies_the_named_header(
    name: str, sent: list[tuple[str, str]], expected: str | None
) -> None:
    auth = create_auth(settings(type="on-behalf", on_behalf_name=name))
    auth.capture("j-1", incoming(*sent))
    req = request(headers=[(name, "recorded-but-not-used")])
    await auth.apply(req)
    assert req.headers.get(name) == expected


async def test_on_behalf_falls_back_to_the_recorded_request_and_forgets() -> None:
    auth = create_auth(settings(type="on-behalf"))
    req = request(headers=[("authorization", "Bearer recorded")])
    await auth.apply(req)  # nothing captured: a restart happened
    assert req.headers["Authorization"] == "Bearer recorded"
    auth.capture("j-1", incoming(("Authorization", "Bearer live")))
    auth.forget("j-1")
    req = request()
    await auth.apply(req)
    assert "Authorization" not in req.headers


def test_on_behalf_never_shows_what_it_captured() -> None:
    auth = OnBehalfAuth("Authorization")
    auth.capture("j-1", incoming(("Authorization", "Bearer top-secret")))
    assert "top-secret" not in repr(auth) + repr(vars(auth))
    assert len(auth) == 1


def test_callback_request_repr_hides_credentials() -> None:
    req = CallbackRequest(URL("http://u:pw@h/cb?key=s3cret"),
                          CIMultiDict({"Authorization": "Bearer s3cret"}), job())  # fmt: skip
    assert "s3cret" not in repr(req) and "pw" not in repr(req)
    assert "authorization" in repr(req)


# --- oauth: the token request and the token ------------------------------------------------


def form(body: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body))


@pytest.mark.parametrize(("config", "refresh", "grant", "body", "authorization"), [
    ({"client_id": "c", "client_secret": "s"}, None, "client_credentials",
     {"grant_type": "client_credentials", "client_id": "c", "client_secret": "s"}, None),
    ({"client_id": "c", "client_secret": "s", "scope": "a b"}, None, "client_credentials",
     {"grant_type": "client_credentials", "scope": "a b", "client_id": "c", "client_secret": "s"},
     None),
    ({"client_id": "c", "client_secret": "s", "token_auth_method": "client_secret_basic"}, None,
     "client_credentials", {"grant_type": "client_credentials"}, "Basic " + b64("c:s")),
    ({"refresh_token": "r0"}, "r1", "refresh_token",
     {"grant_type": "refresh_token", "refresh_token": "r1"}, None),
    ({"refresh_token": "r0", "client_id": "c"}, "r0", "refresh_token",
     {"grant_type": "refresh_token", "refresh_token": "r0", "client_id": "c"}, None),
    ({"refresh_token": "r0", "client_id": "c", "client_secret": "s"}, "r0", "refresh_token",
     {"grant_type": "refresh_token", "refresh_token": "r0", "client_id": "c",
      "client_secret": "s"}, None),
])  # fmt: skip
def test_token_request(config: dict[str, Any], refresh: str | None, grant: str,
                       body: dict[str, str], authorization: str | None) -> None:  # fmt: skip
    s = settings(type="oauth", token_url=URL_, **config)
    made = token_request(s, None if refresh is None else SecretStr(refresh))
    assert made[0] == grant
    assert form(made[2]) == body
    assert made[1].get("Authorization") == authorization
    assert made[1]["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(("status", "body", "reason"), [
    (200, b"not json", "token endpoint answered 200 without a JSON object"),
    (502, b"<html>bad gateway</html>", "token endpoint answered 502 without a JSON object"),
    (200, b"[]", "without a JSON object"),
    (400, b'{"error": "invalid_grant", "error_description": "rt-secret expired"}',
     "token endpoint refused the refresh_token grant: 400 invalid_grant"),
    (401, b"{}", "refused the refresh_token grant: 401 no error code"),
    (200, b'{"error": "access_denied"}', "refused the refresh_token grant: 200 access_denied"),
    (200, b'{"token_type": "Bearer"}', "answered 200 without an access_token"),
    (200, b'{"access_token": "", "token_type": "Bearer"}', "without an access_token"),
    (200, b'{"access_token": "t", "token_type": "mac"}', "unsupported token type 'mac'"),
])  # fmt: skip
def test_parse_token_refusals(status: int, body: bytes, reason: str) -> None:
    with pytest.raises(CallbackAuthError, match=reason) as caught:
        parse_token(status, body, "refresh_token")
    assert "rt-secret" not in str(caught.value)


def test_parse_token_keeps_expiry_and_refresh_token() -> None:
    body = {"access_token": "t", "token_type": "bearer", "expires_in": 300, "refresh_token": "r"}
    token = parse_token(200, json.dumps(body).encode(), "client_credentials")
    assert token["access_token"] == "t" and token["refresh_token"] == "r"
    assert abs(token["expires_at"] - (time.time() + 300)) <= 2
    assert not token.is_expired(leeway=30)
    assert token.is_expired(leeway=301)


def test_a_refusal_is_a_token_refused() -> None:
    with pytest.raises(TokenRefused):
        parse_token(400, b'{"error": "invalid_grant"}', "refresh_token")


@pytest.mark.parametrize(("token", "configured", "leeway"), [
    ({"expires_in": 3600}, 30.0, 30.0),
    ({"expires_in": 20}, 30.0, 10.0),
    ({"expires_in": "2"}, 30.0, 1.0),
    ({}, 30.0, 30.0),
    ({"expires_in": None}, 30.0, 30.0),
])  # fmt: skip
def test_renew_leeway(token: dict[str, Any], configured: float, leeway: float) -> None:
    assert renew_leeway(token, configured) == leeway


async def test_static_token_is_sent_and_cannot_be_renewed() -> None:
    auth = create_auth(settings(type="oauth", access_token="static"))
    req = request()
    await auth.apply(req)
    assert req.headers["Authorization"] == "Bearer static"
    assert await auth.renew() is False
    await auth.close()


async def test_on_behalf_memory_is_bounded_by_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("atkproxy.auth.onbehalf.MAX_CAPTURED_BYTES", 300)  # about two values
    auth = OnBehalfAuth("Authorization")
    for n in range(3):
        auth.capture(f"j-{n}", incoming(("Authorization", f"Bearer live-{n}")))
    assert len(auth) == 2 and 0 < auth.held_bytes <= 300
    auth.capture("big", incoming(("Authorization", "x" * 180)))  # pushes out both others
    assert len(auth) == 1
    auth.forget("big")
    assert (len(auth), auth.held_bytes) == (0, 0)
    for n in range(3):
        auth.capture(f"j-{n}", incoming(("Authorization", f"Bearer live-{n}")))
    oldest = request(headers=[("Authorization", "Bearer recorded")], job_id="j-0")
    await auth.apply(oldest)  # dropped: the recorded request is used, as after a restart
    assert oldest.headers["Authorization"] == "Bearer recorded"
    newest = request(job_id="j-2")
    await auth.apply(newest)
    assert newest.headers["Authorization"] == "Bearer live-2"
