"""`oauth`: `Authorization: Bearer <token>`.

The token is either static (`access_token`) or obtained from `token_url` (Automatiko's
`refresh-url`) with the refresh-token grant when a refresh token is known, else the
client-credentials grant. authlib builds the token request and the client authentication
and parses the token and its expiry; aiohttp carries it.

- One token is cached per configuration (one OAuthAuth per configured mode) and renewed
  `refresh_leeway` seconds before it expires (at most half its lifetime, for short ones).
- Deliveries that find the token expiring share one token request, and its failure.
- A newly issued refresh token replaces the previous one.
- A 401 from a receiver drops the token that was rejected (`renew`), so the retry gets a new
  one; concurrent 401s for the same token renew it once.
- A token endpoint that cannot be reached or refuses raises CallbackAuthError: the delivery
  attempt fails with that reason and is retried later; the proxy carries on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749 import OAuth2Token
from authlib.oauth2.rfc6749.parameters import prepare_token_request
from pydantic import SecretStr
from yarl import URL

from ..redact import mask_url
from .base import CallbackAuthError, CallbackRequest, StaticAuth
from .config import CallbackAuthSettings

log = structlog.get_logger("atkproxy.auth")

# The token the current task last sent, so that renew() knows which token a receiver rejected.
_applied: ContextVar[tuple[int, int] | None] = ContextVar("atkproxy_oauth_applied", default=None)
_serials = itertools.count(1)


@dataclass(frozen=True)
class Held:
    """A token in use (an authlib OAuth2Token), numbered; never shown by repr."""

    token: Any = field(repr=False)
    serial: int = field(default_factory=lambda: next(_serials))

    @property
    def access_token(self) -> str:
        value: str = self.token["access_token"]
        return value


class TokenRefused(CallbackAuthError):
    """The token endpoint answered, but with an error instead of a token."""


_FORM_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded",
}


def token_request(
    settings: CallbackAuthSettings, refresh_token: SecretStr | None
) -> tuple[str, dict[str, str], str]:
    """(grant, headers, form body) of the next token request (pure)."""
    grant = "refresh_token" if refresh_token is not None else "client_credentials"
    params: dict[str, str] = {}
    if refresh_token is not None:
        params["refresh_token"] = refresh_token.get_secret_value()
    if settings.scope:
        params["scope"] = settings.scope
    body: str = prepare_token_request(grant, **params)
    headers = dict(_FORM_HEADERS)
    if settings.client_id is not None:
        secret = settings.client_secret
        method = settings.token_auth_method if secret is not None else "none"
        client = ClientAuth(settings.client_id, secret and secret.get_secret_value(), method)
        _, headers, body = client.prepare("POST", settings.token_url, headers, body)
    return grant, headers, body


def parse_token(status: int, raw: bytes, grant: str) -> Any:
    """The OAuth2Token of a token endpoint answer; CallbackAuthError with a safe reason if none."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise CallbackAuthError(f"token endpoint answered {status} without a JSON object")
    if status >= 400 or "error" in data:
        code = _safe(data.get("error")) or "no error code"
        raise TokenRefused(f"token endpoint refused the {grant} grant: {status} {code}")
    if not isinstance(data.get("access_token"), str) or not data["access_token"]:
        raise TokenRefused(f"token endpoint answered {status} without an access_token")
    token_type = _safe(data.get("token_type", "Bearer"))
    if token_type.lower() != "bearer":
        raise TokenRefused(f"token endpoint issued an unsupported token type {token_type!r}")
    return OAuth2Token.from_dict(data)


def _safe(value: Any) -> str:
    """An error code as the server sent it, cut short and printable."""
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text[:64] if c.isprintable())


def renew_leeway(token: Any, configured: float) -> float:
    """Renew `configured` seconds early, but no earlier than half a short token's lifetime."""
    try:
        lifetime = float(token["expires_in"])
    except (KeyError, TypeError, ValueError):
        return configured
    return min(configured, lifetime / 2)


class OAuthAuth(StaticAuth):
    def __init__(
        self, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> None:
        self._settings = settings
        self._session = session
        self._owns_session = session is None
        self._refresh_token = settings.refresh_token
        self._held: Held | None = None
        self._leeway = settings.refresh_leeway
        self._inflight: asyncio.Task[Held] | None = None
        if settings.access_token is not None:
            static = settings.access_token.get_secret_value()
            self._held = Held(OAuth2Token({"access_token": static}))

    @classmethod
    def from_settings(
        cls, settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
    ) -> OAuthAuth:
        return cls(settings, session)

    async def apply(self, request: CallbackRequest) -> None:
        held = await self._valid_token()
        _applied.set((id(self), held.serial))
        request.headers["Authorization"] = f"Bearer {held.access_token}"

    async def renew(self) -> bool:
        if self._settings.token_url is None:
            return False  # a static token cannot be renewed: the 401 stands
        sent = _applied.get()
        current = self._held
        if current is None:
            return True  # already dropped by a concurrent 401
        if sent is None or sent[0] != id(self) or sent[1] == current.serial:
            self._held = None  # the next apply gets a new one; a newer token is kept
        return True

    async def close(self) -> None:
        if self._inflight is not None:
            self._inflight.cancel()
        if self._owns_session and self._session is not None:
            await self._session.close()

    def __repr__(self) -> str:
        return f"OAuthAuth(token_url={mask_url(self._settings.token_url or '')!r})"

    # -- the cached token ---------------------------------------------------------------

    async def _valid_token(self) -> Held:
        held = self._held
        if held is not None and not self._due(held.token):
            return held
        if held is not None and self._settings.token_url is None:
            return held  # static: sent as it is, the receiver judges it
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._renewed())
            self._inflight.add_done_callback(self._settled)
        return await asyncio.shield(self._inflight)

    def _due(self, token: Any) -> bool:
        return bool(token.is_expired(leeway=renew_leeway(token, self._leeway)))

    def _settled(self, task: asyncio.Task[Held]) -> None:
        self._inflight = None
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter was cancelled

    async def _renewed(self) -> Held:
        try:
            token = await self._fetch()
        except TokenRefused:
            if not self._fallback_possible():
                raise
            self._refresh_token = None  # an issued refresh token went stale: start over
            token = await self._fetch()
        self._held = Held(token)
        return self._held

    def _fallback_possible(self) -> bool:
        s = self._settings
        return s.refresh_token is None and self._refresh_token is not None

    async def _fetch(self) -> Any:
        grant, headers, body = token_request(self._settings, self._refresh_token)
        status, raw = await self._post(headers, body)
        try:
            token = parse_token(status, raw, grant)
        except CallbackAuthError as exc:
            log.warning("callback auth token request failed", grant=grant, reason=str(exc))
            raise
        if token.get("refresh_token"):
            self._refresh_token = SecretStr(str(token["refresh_token"]))
        log.info("callback auth token obtained", grant=grant, expires_in=token.get("expires_in"))
        return token

    async def _post(self, headers: dict[str, str], body: str) -> tuple[int, bytes]:
        url = self._settings.token_url
        assert url is not None
        timeout = aiohttp.ClientTimeout(total=self._settings.token_timeout)
        try:
            async with self._client().post(
                url, data=body.encode(), headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                return response.status, await response.read()
        except TimeoutError:
            reason = f"no answer within {self._settings.token_timeout:g}s"
        except aiohttp.ClientError as exc:
            reason = type(exc).__name__
        where = URL(url).with_user(None).with_query(None)
        log.warning("callback auth token endpoint unreachable", url=str(where), reason=reason)
        # the text is recorded on the attempt: errors name no URL (the log line above does)
        raise CallbackAuthError(f"token endpoint unreachable: {reason}")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self._session
