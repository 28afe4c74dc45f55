"""A small HTTP client for the e2e tests (they are synchronous: podman is driven step by step)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """Status, headers and the JSON body (None when empty) of one request."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, dict(error.headers)
    return status, got, json.loads(raw) if raw else None


def ready(url: str) -> bool:
    try:
        return call("GET", url)[0] == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
