"""Transition shim: what this module held now lives in

    headers.py     header hygiene (pure)
    upstream.py    the error tree, failed_result, error_body, read_limited, CHUNK, Body
    aioclient.py   the client on aiohttp's ClientSession (AiohttpUpstream, Streamed)

Import from those; these names stay until every importer has moved.
"""

from __future__ import annotations

from .aioclient import AiohttpUpstream, Streamed, upstream_errors
from .headers import HOP_BY_HOP, header_pairs, hop_filtered, upstream_headers
from .upstream import (
    CHUNK,
    AnswerTooLarge,
    Body,
    UpstreamError,
    UpstreamNotReached,
    UpstreamTimeout,
    UpstreamUnavailable,
    error_body,
    failed_result,
    read_limited,
)

Upstream = AiohttpUpstream

__all__ = [
    "CHUNK",
    "HOP_BY_HOP",
    "AiohttpUpstream",
    "AnswerTooLarge",
    "Body",
    "Streamed",
    "Upstream",
    "UpstreamError",
    "UpstreamNotReached",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_body",
    "failed_result",
    "header_pairs",
    "hop_filtered",
    "read_limited",
    "upstream_errors",
    "upstream_headers",
]
