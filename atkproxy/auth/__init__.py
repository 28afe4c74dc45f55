"""Callback authentication: one interface, one small module per mode (`callback.auth.type`).

none        nothing added
basic       Authorization: Basic <base64 user:password>
oauth       Authorization: Bearer <token>, static or from a token endpoint (authlib)
custom      <custom_name>: <custom_value>
on-behalf   the incoming request's <on_behalf_name> header, copied onto its callback
query       <query_name>=<query_value> appended to the callback URL
"""

from __future__ import annotations

import importlib

import aiohttp

from ..redact import mask_url
from .base import CallbackAuth, CallbackAuthError, CallbackRequest
from .config import CallbackAuthSettings
from .none import NoAuth

__all__ = [
    "CallbackAuth",
    "CallbackAuthError",
    "CallbackAuthSettings",
    "CallbackRequest",
    "NoAuth",
    "create_auth",
    "describe",
]

# mode -> "module:Class"; a mode's module is imported only when chosen
MODES = {
    "none": "none:NoAuth",
    "basic": "basic:BasicAuth",
    "oauth": "oauth:OAuthAuth",
    "custom": "custom:CustomHeaderAuth",
    "on-behalf": "onbehalf:OnBehalfAuth",
    "query": "query:QueryAuth",
}


def create_auth(
    settings: CallbackAuthSettings, session: aiohttp.ClientSession | None = None
) -> CallbackAuth:
    """The mode chosen by `settings.type`; `session` is used for token endpoints only
    (when omitted, the mode that needs one opens its own and closes it in `close()`)."""
    module_name, class_name = MODES[settings.type].split(":")
    module = importlib.import_module(f"{__name__}.{module_name}")
    auth: CallbackAuth = getattr(module, class_name).from_settings(settings, session)
    return auth


def describe(settings: CallbackAuthSettings) -> str:
    """One line for check-config and the start log: the mode and what it uses, no secret."""
    s = settings
    details = {
        "none": "no authentication",
        "basic": f"user {s.user!r}" if s.user and s.password else "pre-encoded credentials",
        "oauth": _describe_oauth(s),
        "custom": f"header {s.custom_name}",
        "on-behalf": f"header {s.on_behalf_name} of the incoming request",
        "query": f"query parameter {s.query_name}",
    }
    return f"{s.type}: {details[s.type]}"


def _describe_oauth(s: CallbackAuthSettings) -> str:
    if s.token_url is None:
        return "static access token"
    grant = s.grant.replace("_", " ") if s.grant else ""
    first = "static access token, then " if s.access_token else ""
    at = mask_url(str(s.token_url))
    return f"{first}{grant} grant at {at}" + (f" scope {s.scope!r}" if s.scope else "")
