"""The callback URL check of the accept, remembered per URL.

Clients send the same few callback URLs again and again, and parsing one and checking its
destination (destinations.Policy.check_url) costs more than the rest of an accept's header
checks. The policy's answer for a URL changes only when the policy does: after the start,
that is when a request comes in on a listener address not seen before (a port 0 listener is
known late), and then everything remembered is forgotten. Only
URLs that pass are remembered: a refused one costs its full check every time, and the
memory is bounded whatever clients send.
"""

from __future__ import annotations

from .destinations import Policy, Refused
from .errors import Rejected

CALLBACK = "X-ATK-Callback"
MAX_REMEMBERED = 1024
Listener = tuple[str, int]


def refused_callback(exc: Refused) -> Rejected:
    return Rejected(400, f"{CALLBACK} refused: {exc}")


class CallbackUrls:
    def __init__(self, policy: Policy, limit: int = MAX_REMEMBERED) -> None:
        self._policy = policy
        self._limit = limit
        self._passed: dict[str, str] = {}  # the header value -> the URL as it is dialled
        self._listeners: set[Listener] = set()

    def check(self, value: str, listener: object) -> str:
        """The URL `value` names when the policy lets it pass; else Rejected (400).
        `listener`: the address the request came in on (its socket's sockname)."""
        self._note(listener)
        url = self._passed.get(value)
        if url is not None:
            return url
        try:
            url = str(self._policy.check_url(value))
        except Refused as exc:
            raise refused_callback(exc) from None
        if len(self._passed) >= self._limit:
            del self._passed[next(iter(self._passed))]  # the oldest
        self._passed[value] = url
        return url

    def _note(self, listener: object) -> None:
        """The proxy's own address is refused as a destination, whatever is allowed."""
        if not (isinstance(listener, tuple) and len(listener) >= 2):
            return
        key = (str(listener[0]), int(listener[1]))
        if key not in self._listeners:
            self._policy.protect(*key, "the proxy")
            self._listeners.add(key)
            self._passed.clear()  # checked against the policy before it changed
