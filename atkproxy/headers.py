"""Header hygiene, pure: what passes from the client to the upstream and back.

Each function walks the header list once; a second walk happens only when a Connection header
names extra hop-by-hop headers (rare: clients send `keep-alive` or `close`, both handled).
"""

from __future__ import annotations

from collections.abc import Iterable

from multidict import CIMultiDict, CIMultiDictProxy

from .jobs import Headers

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Connection tokens that name no header worth a second walk
_PLAIN_TOKENS = HOP_BY_HOP | {"close"}
# Request headers the proxy replaces with its own (X-Forwarded-For is extended, not replaced)
_REPLACED = frozenset({"host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"})
_REQUEST_DROP = HOP_BY_HOP | _REPLACED

Pairs = Iterable[tuple[str, str]]


def _listed(value: str) -> set[str]:
    """Header names a Connection header lists, beyond the ones dropped anyway."""
    tokens = {token.strip().lower() for token in value.split(",")}
    return tokens - _PLAIN_TOKENS - {""}


def _without(pairs: Headers, names: set[str]) -> Headers:
    return [(k, v) for k, v in pairs if k.lower() not in names]


def response_headers(pairs: Pairs) -> Headers:
    """An answer's headers fit to pass on: hop-by-hop ones and those named in Connection removed."""
    kept: Headers = []
    listed: set[str] = set()
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP:
            if lower == "connection":
                listed |= _listed(value)
            continue
        kept.append((name, value))
    return _without(kept, listed) if listed else kept


def forward_headers(pairs: Pairs, peer: str | None, scheme: str, host: str | None) -> Headers:
    """Request headers for the upstream: no hop-by-hop, no Host, no X-ATK-*; X-Forwarded-For
    extended with the peer, X-Forwarded-Proto and X-Forwarded-Host set by the proxy."""
    kept: Headers = []
    listed: set[str] = set()
    chain: list[str] = []
    for name, value in pairs:
        lower = name.lower()
        if lower in _REQUEST_DROP:
            if lower == "x-forwarded-for":
                chain.append(value)
            elif lower == "connection":
                listed |= _listed(value)
        elif not lower.startswith("x-atk-"):
            kept.append((name, value))
    if listed:
        kept = _without(kept, listed)
        chain = [] if "x-forwarded-for" in listed else chain
    if peer:
        chain.append(peer)
    if chain:
        kept.append(("X-Forwarded-For", ", ".join(chain)))
    kept.append(("X-Forwarded-Proto", scheme))
    if host:
        kept.append(("X-Forwarded-Host", host))
    return kept


def hop_filtered(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """`response_headers` as a multidict (callers that want one)."""
    return CIMultiDict(response_headers(headers.items()))


def upstream_headers(
    incoming: CIMultiDictProxy[str], peer: str | None, scheme: str, host: str | None
) -> CIMultiDict[str]:
    """`forward_headers` as a multidict (callers that edit the result)."""
    return CIMultiDict(forward_headers(incoming.items(), peer, scheme, host))


def header_pairs(headers: Iterable[tuple[str, str]]) -> Headers:
    return [(str(k), str(v)) for k, v in headers]
