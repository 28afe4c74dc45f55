"""Transition shim: what this module held now lives in

    headers.py     header hygiene (pure)
    upstream.py    the error tree, failed_result, error_body, read_limited, CHUNK, Body
    http1.py       the upstream client (Http1Upstream, its Answer): keep-alive HTTP/1.1 on httptools
    aioclient.py   the client on aiohttp's ClientSession (AiohttpUpstream, Streamed): the reference

Import from those; these names stay until every importer has moved.
"""

from __future__ import annotations

from .aioclient import AiohttpUpstream, Streamed, upstream_errors
from .headers import HOP_BY_HOP, header_pairs, hop_filtered, upstream_headers
from .http1 import Http1Upstream
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

Upstream = Http1Upstream

__all__ = [
    "CHUNK",
    "HOP_BY_HOP",
    "AiohttpUpstream",
    "AnswerTooLarge",
    "Body",
    "Http1Upstream",
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
