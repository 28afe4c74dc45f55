"""Hiding credentials in what is shown (pure): URL passwords and query values, error texts,
nested configuration dumps.

A URL's query may carry a credential (the query callback auth mode, a signed link), so a URL
shown in a log, `check-config` or an error keeps its parameter names and loses their values.
"""

from __future__ import annotations

import re
from typing import Any

from yarl import URL

REDACTED = "**********"
# a scheme, `://` and what follows up to a blank or a quote: how a URL appears in error texts
_URL_IN_TEXT = re.compile(r"""[A-Za-z][A-Za-z0-9+.-]*://[^\s'"<>]*""")


def mask_url(value: str) -> str:
    """A URL's password and query values replaced by the redaction mark; else the value."""
    if "://" not in value:
        return value
    try:
        url = URL(value)
    except ValueError:
        return value
    if url.password:
        url = url.with_password(REDACTED)
    if url.raw_query_string:
        masked = "&".join(_masked_param(p) for p in url.raw_query_string.split("&"))
        url = url.with_query(None).with_fragment(url.raw_fragment or None)
        return _with_raw_query(str(url), masked)
    return str(url) if url.password else value


def _masked_param(param: str) -> str:
    name, equals, _ = param.partition("=")
    return f"{name}={REDACTED}" if equals else name


def _with_raw_query(url: str, query: str) -> str:
    base, hash_, fragment = url.partition("#")
    return f"{base}?{query}" + (hash_ + fragment if hash_ else "")


def mask_urls(tree: Any) -> Any:
    """Every URL password and query value in a nested dump of dicts and lists masked."""
    if isinstance(tree, dict):
        return {key: mask_urls(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [mask_urls(value) for value in tree]
    return mask_url(tree) if isinstance(tree, str) else tree


def without_urls(text: str) -> str:
    """An error text with every URL in it replaced: errors are recorded and logged."""
    return _URL_IN_TEXT.sub("<URL>", text)
