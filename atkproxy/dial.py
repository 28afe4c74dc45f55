"""Connecting to a callback receiver: every address dialled passes the destination policy.

A callback URL names a host chosen by a client. `dial` checks the host's spelling (no numeric
shortcuts), resolves a name (a literal address is not resolved), drops every address the policy
refuses and connects to the permitted ones in turn. So a name that resolves elsewhere when it
is dialled (DNS rebinding) is refused there, before a byte is sent. An https receiver is checked
with the callback.tls context against the URL's host (SNI and the certificate's names),
whichever of its addresses was dialled.

Exceptions, each with a text safe to record (no URL, no host name). The class names are
aiohttp's, so the errors recorded on jobs read as they did when aiohttp carried callbacks:

    CallbackClientError
    ├── DestinationRefused                the policy refuses every address, or the host
    ├── ClientConnectorError              no permitted address took a connection
    │   ├── ClientConnectorDNSError       the name did not resolve
    │   └── ClientConnectorCertificateError   the receiver's certificate failed verification
    ├── ServerDisconnectedError           the receiver closed the connection without an answer
    └── BadAnswerError                    not HTTP/1.1, or a request head that cannot be sent
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable

from .destinations import IPAddress, Policy, Refused, check_host, literal_address

# A host name and port -> the addresses they resolve to, in the order to try them
Lookup = Callable[[str, int], Awaitable[list[str]]]
ProtocolFactory = Callable[[], asyncio.BaseProtocol]


class CallbackClientError(Exception):
    """A callback attempt that got no answer; the text names the reason, never the URL."""


class DestinationRefused(CallbackClientError):
    """Raised at connect time; its text is the policy's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"destination refused: {self.reason}"


class ClientConnectorError(CallbackClientError):
    pass


class ClientConnectorDNSError(ClientConnectorError):
    pass


class ClientConnectorCertificateError(ClientConnectorError):
    pass


class ServerDisconnectedError(CallbackClientError):
    pass


class BadAnswerError(CallbackClientError):
    pass


async def system_lookup(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, each once, in its order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:  # socket.gaierror: its text is the resolver's, without the name
        raise ClientConnectorDNSError("the name did not resolve") from None
    return list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in infos))


async def permitted_addresses(host: str, port: int, policy: Policy, lookup: Lookup) -> list[str]:
    """The addresses of `host` that the policy lets the proxy dial; DestinationRefused if none."""
    try:
        check_host(host)
        literal = literal_address(host)
        if literal is not None:
            policy.check_address(literal, port)
            return [str(literal)]
    except Refused as exc:
        raise DestinationRefused(str(exc)) from None
    kept: list[str] = []
    reason = "the name resolved to no address"
    for answer in await lookup(host, port):
        try:
            address: IPAddress = ipaddress.ip_address(answer.split("%")[0])
            policy.check_address(address, port, host)
        except (Refused, ValueError) as exc:
            reason = str(exc)
            continue
        kept.append(answer)
    if not kept:
        raise DestinationRefused(reason)
    return kept


async def dial(
    factory: ProtocolFactory,
    host: str,
    port: int,
    policy: Policy,
    context: ssl.SSLContext | None = None,
    lookup: Lookup = system_lookup,
) -> None:
    """Connect `factory`'s protocol to the first permitted address of `host` that answers;
    TLS (with `context`) is checked against `host`, not the address."""
    loop = asyncio.get_running_loop()
    failure: OSError | None = None
    for address in await permitted_addresses(host, port, policy, lookup):
        try:
            await loop.create_connection(
                factory, address, port, ssl=context, server_hostname=host if context else None
            )
            return
        except ssl.SSLCertVerificationError as exc:
            raise ClientConnectorCertificateError(_verify_reason(exc)) from None
        except OSError as exc:
            failure = exc
    raise ClientConnectorError(_reason(failure))


def _reason(exc: OSError | None) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.__class__.__name__
    return (exc.strerror if exc else None) or (exc.__class__.__name__ if exc else "")


_QUOTED = re.compile(r"'[^']*'")


def _verify_reason(exc: ssl.SSLCertVerificationError) -> str:
    """Why the certificate failed (expired, unknown issuer...), without the name it is for."""
    message = exc.verify_message or exc.reason or "certificate verify failed"
    return _QUOTED.sub("the host", str(message))
