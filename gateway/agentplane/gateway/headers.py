"""HTTP request headers -> gRPC metadata, as grpc-gateway forwards them.

- ``Authorization`` passes through as ``authorization`` (so the server's auth
  sees the same credentials over HTTP as over gRPC), and ``X-Request-Id`` as
  ``x-request-id`` (so the HTTP request and the gRPC call it became share
  their id in the servers' logs);
- ``Grpc-Metadata-Foo: v`` becomes ``foo: v`` (a way to send any metadata);
- every other header is forwarded with a ``grpcgateway-`` prefix, so hooks
  can read, say, ``grpcgateway-x-api-key`` or ``grpcgateway-origin``. grpc-gateway
  forwards only the standard ("permanent") headers this way; forwarding all
  (except hop-by-hop and framing headers) lets permission hooks use custom
  headers such as ``X-API-Key``, as the reference server's hooks do;
- the client's address is appended to ``x-forwarded-for`` and the Host goes
  in ``x-forwarded-host``.

Headers gRPC reserves (``grpc-*``, ``te``, ``content-type``, pseudo-headers) are
never forwarded from ``Grpc-Metadata-*``, and values that are not printable
ASCII are dropped (gRPC text metadata cannot carry them).
"""

from __future__ import annotations

from collections.abc import Iterable

METADATA_PREFIX = "grpc-metadata-"
# Forwarded under their own names.
_AS_IS = frozenset({"authorization", "x-request-id"})
FORWARD_PREFIX = "grpcgateway-"

# Per-connection and framing headers: meaningless to the RPC.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
        "trailer",
        "content-length",
        "host",
        "authorization",
        "x-request-id",
    }
)
_RESERVED = frozenset({"te", "content-type", "user-agent", "host", "connection"})


def _printable(value: str) -> bool:
    # Space to "~": for ASCII text exactly what str.isprintable accepts.
    return value.isascii() and value.isprintable()


def _forwardable(name: str) -> bool:
    return (
        bool(name)
        and not name.startswith(("grpc-", ":"))
        and name not in _RESERVED
        and not name.endswith("-bin")
    )


def forwarded_metadata(
    headers: Iterable[tuple[bytes, bytes]], client: str | None
) -> list[tuple[str, str]]:
    """The metadata an HTTP request's headers become (keys lower case)."""
    metadata: list[tuple[str, str]] = []
    forwarded_for: str | None = None
    host: str | None = None
    for raw_key, raw_value in headers:
        key = raw_key.decode("latin-1").lower()
        value = raw_value.decode("latin-1").strip()
        if not _printable(value):
            continue
        if key in _AS_IS:
            metadata.append((key, value))
        elif key.startswith(METADATA_PREFIX):
            name = key[len(METADATA_PREFIX) :]
            # Binary ("-bin") metadata would need base64 framing: not forwarded.
            if _forwardable(name):
                metadata.append((name, value))
        elif key == "x-forwarded-for":
            forwarded_for = value
        elif key == "host":
            host = value
        elif key not in _NOT_FORWARDED:
            metadata.append((FORWARD_PREFIX + key, value))
    if client:
        forwarded_for = f"{forwarded_for}, {client}" if forwarded_for else client
    if forwarded_for:
        metadata.append(("x-forwarded-for", forwarded_for))
    if host:
        metadata.append(("x-forwarded-host", host))
    return metadata
