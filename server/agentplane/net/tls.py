"""TLS contexts for agentplane's ports and for the connections it makes, from PEM files.

Servers: ``server_context(cert, key, client_ca=None)``: the certificate chain
and its key; with ``client_ca``, mutual TLS (a client must present a
certificate that CA issued). ``alpn=("h2",)`` for the gRPC port: gRPC clients
(grpcio, grpc-go) refuse a server that does not select h2. Clients:
``client_context(ca=None, cert=None, key=None)``: trusts ``ca`` (else the
system's CAs), presents ``cert`` for mutual TLS, offers h2.

Every problem with a file (missing, unreadable, not PEM, a key that does not
match its certificate) is a ``TlsError`` whose message is one line naming the
file, so a server refuses to start with that line rather than a traceback.
TLS 1.2 is the minimum.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class TlsError(ValueError):
    """A certificate, key or CA file that cannot be used; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A server's PEM files: its certificate chain, its key, and (mutual TLS) its clients' CA."""

    cert: str
    key: str
    client_ca: str | None = None

    def context(self, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
        """A server context of these files; TlsError naming the file that cannot be used."""
        return server_context(self.cert, self.key, self.client_ca, alpn=alpn)


def server_context(
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    client_ca: str | os.PathLike[str] | None = None,
    *,
    alpn: Sequence[str] = (),
) -> ssl.SSLContext:
    """A server context serving ``cert`` (PEM chain) with ``key``; mTLS with ``client_ca``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, cert, key, "TLS")
    if client_ca is not None:
        _load_ca(context, client_ca, "TLS client CA")
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def client_context(
    ca: str | os.PathLike[str] | None = None,
    cert: str | os.PathLike[str] | None = None,
    key: str | os.PathLike[str] | None = None,
    *,
    alpn: Sequence[str] = ("h2",),
) -> ssl.SSLContext:
    """A client context that verifies the server (against ``ca``, else the system's CAs)."""
    if (cert is None) != (key is None):
        raise TlsError("a client certificate needs its key, and a key its certificate")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load_ca(context, ca, "TLS CA")
    if cert is not None and key is not None:
        _load_chain(context, cert, key, "TLS client")
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def check_readable(path: str | os.PathLike[str], what: str) -> None:
    """TlsError unless ``path`` is a file this process can read."""
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise TlsError(f"cannot read {what} file {os.fspath(path)}: {reason}") from None
    if not Path(path).is_file():
        raise TlsError(f"{what} file {os.fspath(path)} is not a file")


def _load_chain(
    context: ssl.SSLContext,
    cert: str | os.PathLike[str],
    key: str | os.PathLike[str],
    what: str,
) -> None:
    check_readable(cert, f"{what} certificate")
    check_readable(key, f"{what} key")
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if "KEY_VALUES_MISMATCH" in str(error):
            raise TlsError(
                f"{what} key {os.fspath(key)} does not match certificate {os.fspath(cert)}"
            ) from None
        raise TlsError(
            f"cannot load {what} certificate {os.fspath(cert)} with key {os.fspath(key)}: "
            f"{_reason(error)} (both must be PEM; an encrypted key is not supported)"
        ) from None


def _load_ca(context: ssl.SSLContext, ca: str | os.PathLike[str], what: str) -> None:
    check_readable(ca, what)
    try:
        context.load_verify_locations(cafile=ca)
    except ssl.SSLError as error:
        raise TlsError(
            f"cannot load {what} {os.fspath(ca)}: {_reason(error)} (expected PEM certificates)"
        ) from None


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error).replace("\n", " ")
