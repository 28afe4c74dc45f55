"""Header hygiene, pure: what passes from the client to the upstream and back.

Each function walks the header list once; a second walk happens only when a Connection header
names extra hop-by-hop headers (rare: clients send `keep-alive` or `close`, both handled).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

from .forwarded import Network, appended, client_set, is_trusted
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


def forward_headers(
    pairs: Pairs,
    peer: str | None,
    scheme: str,
    host: str | None,
    trusted: Sequence[Network] = (),
) -> Headers:
    """Request headers for the upstream: no hop-by-hop, no Host, no X-ATK-*; the forwarding
    headers settled by forwarded.py: the client's own kept (and extended with the peer) only
    from a peer in `trusted`, else replaced by the proxy's."""
    if trusted and is_trusted(peer, trusted):
        assert peer is not None
        return list(appended(CIMultiDict(_filtered(pairs, keep_forwarding=True)), peer, scheme,
                             host).items())  # fmt: skip
    kept = _filtered(pairs, keep_forwarding=False)
    if peer:
        kept.append(("X-Forwarded-For", peer))
    kept.append(("X-Forwarded-Proto", scheme))
    if host:
        kept.append(("X-Forwarded-Host", host))
    return kept


def _filtered(pairs: Pairs, keep_forwarding: bool) -> Headers:
    kept: Headers = []
    listed: set[str] = set()
    for name, value in pairs:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower == "host" or lower.startswith("x-atk-"):
            if lower == "connection":
                listed |= _listed(value)
        elif keep_forwarding or not client_set(lower):
            kept.append((name, value))
    return _without(kept, listed) if listed else kept


def hop_filtered(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    """`response_headers` as a multidict (callers that want one)."""
    return CIMultiDict(response_headers(headers.items()))


def upstream_headers(
    incoming: CIMultiDictProxy[str],
    peer: str | None,
    scheme: str,
    host: str | None,
    trusted: Sequence[Network] = (),
) -> CIMultiDict[str]:
    """`forward_headers` as a multidict (callers that edit the result)."""
    return CIMultiDict(forward_headers(incoming.items(), peer, scheme, host, trusted))


def header_pairs(headers: Iterable[tuple[str, str]]) -> Headers:
    return [(str(k), str(v)) for k, v in headers]
