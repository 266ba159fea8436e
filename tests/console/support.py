"""Pieces of the CLI tests: agents, a CLI runner off the event loop, a relay that drops connections, certificates."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from agentplane.server.cli import main

HOST = "127.0.0.1"


# ------------------------------------------------------------------ agents


async def create_agent(**metadata: Any) -> dict[str, Any]:
    return dict(metadata)


async def join_call(agent: dict[str, Any], call_type: str, call_id: str, *, session: Any) -> None:
    if agent.get("fail"):
        raise RuntimeError("the agent failed")
    session.add("frames", 3)
    await asyncio.Event().wait()  # in the call until the session ends


# ------------------------------------------------------------------ the CLI


@dataclass
class Ran:
    """One ``agentplane ...`` run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines()]


async def cli(*args: str, env: dict[str, str] | None = None) -> Ran:
    """Run ``agentplane *args`` with click's CliRunner, in a thread (it runs its own loop)."""
    base = {"AGENTPLANE_SERVER": None, "AGENTPLANE_API_TOKEN": None}
    runner = CliRunner()

    def invoke() -> Result:
        return runner.invoke(main, list(args), env={**base, **(env or {})}, catch_exceptions=False)

    result = await asyncio.to_thread(invoke)
    return Ran(result.exit_code, result.stdout, result.stderr)


def on(port: int) -> list[str]:
    return ["--server", f"{HOST}:{port}"]


# ------------------------------------------------------------------ relay


class Relay:
    """A TCP relay to a server's port that a test can cut: every connection drops at once.

    While closed (``cut(refuse=True)``) each new connection is accepted and
    closed at once, as a server that is down; ``reopen()`` relays again,
    to the same port or another (a restarted server).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepting = True
        self.connections = 0  # relayed ones
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        self._drop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def cut(self, refuse: bool = True) -> None:
        """Drop every relayed connection (and refuse new ones while ``refuse``)."""
        self.accepting = not refuse
        self._drop()

    def reopen(self, target_port: int | None = None) -> None:
        if target_port is not None:
            self.target_port = target_port
        self.accepting = True

    def _drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.accepting:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()
        self._writers.discard(sink)


# ------------------------------------------------------------- certificates


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here


def make_pki(folder: Path) -> Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client one, in PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def write(path: Path, key: ec.EllipticCurvePrivateKey | None, cert: x509.Certificate) -> None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            path.with_suffix(".key").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )

    def authority(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(name(common))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return key, cert

    def leaf(
        common: str,
        ca_key: ec.EllipticCurvePrivateKey,
        ca_cert: x509.Certificate,
        usage: x509.ObjectIdentifier,
        server: bool,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
        return key, builder.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = authority("agentplane test CA")
    _, other_cert = authority("another CA")
    server_key, server_cert = leaf(
        "agentplane server", ca_key, ca_cert, ExtendedKeyUsageOID.SERVER_AUTH, server=True
    )
    client_key, client_cert = leaf(
        "ops-client", ca_key, ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH, server=False
    )
    write(folder / "ca.pem", None, ca_cert)
    write(folder / "other-ca.pem", None, other_cert)
    write(folder / "server.pem", server_key, server_cert)
    write(folder / "client.pem", client_key, client_cert)
    return Pki(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
    )
