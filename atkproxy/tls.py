"""TLS client contexts for the upstream and the callback receivers (no network here).

Certificates are verified by default, against the system's CAs or, when `ca_file` is set,
against that bundle only (a private CA). `cert_file` (+ `key_file`, unless the key is in
the same PEM file) is the client certificate presented to a server that asks for one.
`verify: false` turns verification off: for a test bed only, and said at every start.
"""

from __future__ import annotations

import ssl


class TlsConfigError(ValueError):
    """A file that cannot be read or does not hold what its key says."""


def client_context(
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client context that checks the server's certificate and host name (unless `verify`
    is off) and presents `cert_file` when the server asks for a client certificate."""
    if key_file is not None and cert_file is None:
        raise TlsConfigError("key_file needs cert_file")
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TlsConfigError(f"ca_file: cannot load a CA bundle ({_reason(exc)})") from None
    if cert_file is not None:
        try:
            context.load_cert_chain(cert_file, key_file)
        except (OSError, ssl.SSLError) as exc:
            raise TlsConfigError(f"cert_file/key_file: cannot load ({_reason(exc)})") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _reason(exc: OSError | ssl.SSLError) -> str:
    """The kind of failure, without the path (the message already names the key)."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.__class__.__name__
    return exc.strerror or exc.__class__.__name__
