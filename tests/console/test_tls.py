"""TLS client options against a grpclib server with an SSL context.

A stand-in SessionService answers Get; the mutual-TLS server requires a
client certificate signed by the test CA, so a Get that answers proves the
CLI presented it. Against agentplane's own mTLS server: tests/config/test_processes.py.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.server import Server

from agentplane.clients.betterproto import GetRequest, GetResponse, Session, SessionServiceBase
from tests.support.tls import Pki, make_pki

from .support import HOST, cli, on


class Echo(SessionServiceBase):
    """Get answers a session of that id (created_by "tls")."""

    async def get(self, message: GetRequest) -> GetResponse:
        return GetResponse(session=Session(session_id=message.session_id, created_by="tls"))


def server_context(pki: Pki, require_client: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.set_alpn_protocols(["h2"])
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(str(pki.ca))
    return context


def combined_pem(pki: Pki) -> Path:
    """The client certificate and its key in one file."""
    both = Path(pki.client_cert).with_name("both.pem")
    both.write_bytes(Path(pki.client_cert).read_bytes() + Path(pki.client_key).read_bytes())
    return both


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


async def tls_server(pki: Pki, require_client: bool) -> AsyncIterator[int]:
    server = Server([Echo()])
    await server.start(HOST, 0, ssl=server_context(pki, require_client))
    try:
        yield int(server._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
async def tls_port(pki: Pki) -> AsyncIterator[int]:
    async for port in tls_server(pki, require_client=False):
        yield port


@pytest.fixture
async def mtls_port(pki: Pki) -> AsyncIterator[int]:
    async for port in tls_server(pki, require_client=True):
        yield port


async def test_tls_with_the_servers_ca(pki: Pki, tls_port: int) -> None:
    ran = await cli("sessions", "get", "s1", "--tls-ca", str(pki.ca), "-o", "json", *on(tls_port))
    assert ran.code == 0, ran.err
    assert ran.json()["session_id"] == "s1"

    # The certificate names localhost too; --tls-server-name checks against it.
    named = await cli(
        "sessions", "get", "s1", "--tls-ca", str(pki.ca), "--tls-server-name", "localhost",
        *on(tls_port),
    )  # fmt: skip
    assert named.code == 0, named.err


async def test_tls_refuses_a_server_its_ca_does_not_vouch_for(pki: Pki, tls_port: int) -> None:
    ran = await cli("sessions", "get", "s1", "--tls-ca", str(pki.other_ca), *on(tls_port))
    assert ran.code == 64 + 14
    assert ran.err.startswith("error: UNAVAILABLE: TLS failed: "), ran.err
    assert "CERTIFICATE_VERIFY_FAILED" in ran.err

    wrong_name = await cli(
        "sessions", "get", "s1", "--tls-ca", str(pki.ca), "--tls-server-name", "elsewhere",
        *on(tls_port),
    )  # fmt: skip
    assert wrong_name.code == 78, wrong_name.err


async def test_plaintext_to_a_tls_server_is_unavailable(tls_port: int) -> None:
    ran = await cli("sessions", "get", "s1", "--timeout", "5", *on(tls_port))
    assert ran.code == 78, ran.err
    assert ran.err.startswith("error: UNAVAILABLE: "), ran.err


async def test_mutual_tls_needs_the_client_certificate(pki: Pki, mtls_port: int) -> None:
    without = await cli("sessions", "get", "s1", "--tls-ca", str(pki.ca), *on(mtls_port))
    assert without.code == 78, without.err

    ran = await cli(
        "sessions", "get", "s1", "--tls-ca", str(pki.ca), "--tls-cert", str(pki.client_cert),
        "--tls-key", str(pki.client_key), "-o", "json", *on(mtls_port),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert ran.json()["created_by"] == "tls"

    # The key in the certificate's own file works too.
    both = combined_pem(pki)
    combined = await cli(
        "sessions", "get", "s1", "--tls-ca", str(pki.ca), "--tls-cert", str(both),
        *on(mtls_port),
    )  # fmt: skip
    assert combined.code == 0, combined.err


async def test_unusable_tls_files_are_a_usage_error(pki: Pki) -> None:
    ran = await cli(
        "sessions", "list", "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.server_key)
    )
    assert ran.code == 2
    assert "cannot use the TLS files" in ran.err
    not_pem = await cli("sessions", "list", "--tls-ca", __file__)
    assert not_pem.code == 2
