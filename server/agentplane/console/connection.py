"""Where the CLI connects and how: ``--server``, ``--token``, ``--timeout`` and TLS."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

from grpclib.client import Channel
from grpclib.config import Configuration

from agentplane.clients.betterproto import SessionServiceStub

DEFAULT_SERVER = "127.0.0.1:50051"


def parse_server(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) -> (host, port); ValueError naming the problem."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class TlsFiles:
    """TLS for the channel: a CA bundle to trust (else the system's), a client certificate."""

    ca: Path | None = None
    cert: Path | None = None
    #: The client certificate's key (None: it is in ``cert``'s file).
    key: Path | None = None
    #: The name the server's certificate must carry (default: the host of --server).
    server_name: str | None = None

    def context(self) -> ssl.SSLContext:
        """A client context for HTTP/2 (ALPN h2); OSError/ssl.SSLError for unreadable files."""
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca is not None else None)
        if self.cert is not None:
            context.load_cert_chain(str(self.cert), str(self.key) if self.key is not None else None)
        context.set_alpn_protocols(["h2"])
        return context


@dataclass(frozen=True)
class Connection:
    """One server to talk to, and the credentials and deadline of every call."""

    host: str
    port: int
    token: str | None = None
    #: Deadline of each unary call in seconds (None: none). A watch has none.
    timeout: float | None = None
    tls: TlsFiles | None = None
    _context: list[ssl.SSLContext] = field(default_factory=list, repr=False, compare=False)

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def metadata(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (made once), or None for plaintext."""
        if self.tls is None:
            return None
        if not self._context:
            self._context.append(self.tls.context())
        return self._context[0]

    def channel(self) -> Channel:
        """A new grpclib channel (it connects on its first call); the caller closes it."""
        context = self.ssl_context()
        config = None
        if context is not None and self.tls is not None and self.tls.server_name:
            config = Configuration(ssl_target_name_override=self.tls.server_name)
        return Channel(self.host, self.port, ssl=context, config=config)

    def stub(self, channel: Channel) -> SessionServiceStub:
        """The SessionService client over ``channel``, sending the token on every call."""
        return SessionServiceStub(channel, metadata=self.metadata(), timeout=self.timeout)
