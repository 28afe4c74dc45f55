"""Hiding credentials in what is shown (pure): URL passwords, nested configuration dumps."""

from __future__ import annotations

from typing import Any

from yarl import URL

REDACTED = "**********"


def mask_url(value: str) -> str:
    """A URL's password replaced by the redaction mark; anything else as it is."""
    if "://" not in value:
        return value
    try:
        url = URL(value)
    except ValueError:
        return value
    return str(url.with_password(REDACTED)) if url.password else value


def mask_urls(tree: Any) -> Any:
    """Every URL password in a nested dump of dicts and lists masked."""
    if isinstance(tree, dict):
        return {key: mask_urls(value) for key, value in tree.items()}
    if isinstance(tree, list):
        return [mask_urls(value) for value in tree]
    return mask_url(tree) if isinstance(tree, str) else tree
