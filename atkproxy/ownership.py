"""Who may read a job (pure): the caller whose credentials made it, or the operator.

A job whose async request carried credentials (`store.protected_headers`, and the
on-behalf header when that callback mode is on) records `Job.owner`: an HMAC-SHA256, under
a per-deployment key, of those header names and values. Its status and result are shown
only to a request presenting the same values (compared in constant time), or to one
presenting the management token. Anything else gets the 404 of an unknown id, so a job's
existence is not revealed. A job made without credentials has no owner: its id is the
only key to it, as before.

Precedence, since the management token and a client's own credentials both travel in
`Authorization`: a request whose `Authorization` is exactly `Bearer <management.token>`
is the operator; any other request is compared as an owner.

The key: derived from `store.secret_key` when set, else from `management.owner_key`, else
random for this process. With the random key a restart (or another replica sharing the
store) cannot recognise owners any more, and such jobs are readable only with the
management token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from multidict import CIMultiDictProxy, MultiMapping
from pydantic import SecretStr

from .settings import Settings

# A different purpose than the store's encryption: the key is derived, never the same bytes.
KEY_CONTEXT = b"atkproxy job owner v1"
_PROCESS_KEY = secrets.token_bytes(32)  # the fallback: one per process, never written


def owner_key(*candidates: SecretStr | None) -> bytes:
    """The key from the first configured secret, else this process's random key."""
    for secret in candidates:
        if secret is not None:
            material = secret.get_secret_value().encode()
            return hmac.new(material, KEY_CONTEXT, hashlib.sha256).digest()
    return _PROCESS_KEY


def owner_digest(key: bytes, headers: MultiMapping[str], names: Iterable[str]) -> str | None:
    """The keyed digest of the credential headers present; None when there are none.

    Names are compared without case and taken in sorted order, so the configured order does
    not matter; each name and value is length-prefixed, so no two sets of values collide.
    """
    mac = hmac.new(key, digestmod=hashlib.sha256)
    found = False
    for name in sorted({n.lower() for n in names}):
        for value in headers.getall(name, []):
            found = True
            for part in (name, value):
                data = part.encode("utf-8", "surrogateescape")  # the bytes as they came
                mac.update(len(data).to_bytes(8, "big") + data)
    return mac.hexdigest() if found else None


def is_operator(headers: MultiMapping[str], token: SecretStr | None) -> bool:
    """`Authorization: Bearer <management.token>`, compared in constant time."""
    if token is None:
        return False
    given = headers.get("Authorization", "").encode("utf-8", "surrogateescape")
    wanted = f"Bearer {token.get_secret_value()}".encode()
    return hmac.compare_digest(given, wanted)


def same_owner(job_owner: str | None, presented: str | None) -> bool:
    """Whether a caller presenting `presented` may read a job owned by `job_owner`."""
    if job_owner is None:
        return True
    return presented is not None and hmac.compare_digest(job_owner, presented)


@dataclass(frozen=True, slots=True)
class Ownership:
    """The rule with its key, credential header names and management token."""

    key: bytes
    names: tuple[str, ...]
    token: SecretStr | None = None

    def owner(self, headers: CIMultiDictProxy[str]) -> str | None:
        return owner_digest(self.key, headers, self.names)

    def may_read(self, job_owner: str | None, headers: CIMultiDictProxy[str]) -> bool:
        if job_owner is None or is_operator(headers, self.token):
            return True
        return same_owner(job_owner, self.owner(headers))


def ownership_for(settings: Settings) -> Ownership:
    auth = settings.callback.auth
    names = [*settings.store.protected_headers]
    if auth.type == "on-behalf" and auth.on_behalf_name:  # a credential the client passes
        names.append(auth.on_behalf_name)
    key = owner_key(settings.store.secret_key, settings.management.owner_key)
    return Ownership(key, tuple(names), settings.management.token)
