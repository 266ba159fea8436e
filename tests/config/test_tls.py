"""TLS and mutual TLS on both ports, with real certificates and real clients (issue 15).

A server in this process (``agentplane.testing.serving``) on loopback ports;
gRPC through grpclib (the betterproto2 client) and grpcio (the generated
stubs), HTTP through httpx; the standalone gateway dialling a TLS upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
from grpclib.client import Channel
from grpclib.exceptions import StreamTerminatedError

from agentplane.clients.betterproto import SessionServiceStub
from agentplane.clients.betterproto.agentplane.v1 import StartRequest
from agentplane.clients.grpcio import session_service_pb2 as pb
from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
from agentplane.http.app import gateway_app, session_upstream
from agentplane.http.server import HttpServer
from agentplane.net import TlsError, TlsFiles, client_context
from agentplane.server import ServeOptions
from agentplane.testing import Served, serving, trusting
from tests.support import ServerAgents, open_options
from tests.support.tls import Pki

HOST = "127.0.0.1"


def tls_options(pki: Pki, *, mutual: bool = False) -> ServeOptions:
    return open_options(
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca if mutual else None,
    )


def httpx_context(pki: Pki, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    """httpx's own context (it sets its own ALPN on it)."""
    return client_context(pki.ca, cert, key, alpn=())


async def grpcio_start(port: int, credentials: grpc.ChannelCredentials, call_id: str) -> str:
    async with grpc.aio.secure_channel(f"{HOST}:{port}", credentials) as channel:
        stub = pb_grpc.SessionServiceStub(channel)
        reply = await stub.Start(pb.StartRequest(call_id=call_id), timeout=10)
    return str(reply.session_id)


def credentials(
    pki: Pki, *, client: bool = False, stranger: bool = False
) -> grpc.ChannelCredentials:
    root = Path(pki.ca).read_bytes()
    if stranger:
        return grpc.ssl_channel_credentials(
            root, Path(pki.other_client_key).read_bytes(), Path(pki.other_client_cert).read_bytes()
        )
    if client:
        return grpc.ssl_channel_credentials(
            root, Path(pki.client_key).read_bytes(), Path(pki.client_cert).read_bytes()
        )
    return grpc.ssl_channel_credentials(root)


@pytest.fixture
async def tls_server(pki: Pki) -> AsyncIterator[Served]:
    async with serving(ServerAgents().launcher(), tls_options(pki)) as served:
        yield served


@pytest.fixture
async def mtls_server(pki: Pki) -> AsyncIterator[Served]:
    client = trusting(pki.ca, pki.client_cert, pki.client_key)
    async with serving(
        ServerAgents().launcher(), tls_options(pki, mutual=True), client_ssl=client
    ) as served:
        yield served


# ------------------------------------------------------------------- TLS


async def test_grpclib_client_starts_a_session_over_tls(tls_server: Served) -> None:
    # serving() dials its own TLS server trusting the served certificate.
    reply = await tls_server.stub.start(StartRequest(call_id="tls-grpclib"), timeout=10)
    assert reply.session_id
    assert tls_server.tls
    # The server chose h2 by ALPN: grpclib sends nothing else.
    protocol = tls_server.channel._protocol
    assert protocol is not None
    ssl_object = protocol.connection._transport.get_extra_info("ssl_object")
    assert ssl_object.selected_alpn_protocol() == "h2"


async def test_grpclib_client_trusting_the_ca(tls_server: Served, pki: Pki) -> None:
    channel = Channel(HOST, tls_server.grpc_port, ssl=client_context(pki.ca))
    try:
        reply = await SessionServiceStub(channel).start(StartRequest(call_id="ca"), timeout=10)
        assert reply.session_id
    finally:
        channel.close()


async def test_grpcio_client_starts_a_session_over_tls(tls_server: Served, pki: Pki) -> None:
    # grpcio refuses a server that does not select h2 by ALPN: this checks that too.
    assert await grpcio_start(tls_server.grpc_port, credentials(pki), "tls-grpcio")


async def test_plaintext_and_untrusting_clients_get_nothing(tls_server: Served, pki: Pki) -> None:
    plain = Channel(HOST, tls_server.grpc_port)
    try:
        with pytest.raises((StreamTerminatedError, ConnectionError, OSError, asyncio.TimeoutError)):
            await SessionServiceStub(plain).start(StartRequest(call_id="plain"), timeout=5)
    finally:
        plain.close()
    # A client that does not trust the server's CA refuses the handshake itself.
    stranger = Channel(HOST, tls_server.grpc_port, ssl=client_context(pki.other_ca))
    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await SessionServiceStub(stranger).start(StartRequest(call_id="x"), timeout=5)
    finally:
        stranger.close()
    async with grpc.aio.insecure_channel(f"{HOST}:{tls_server.grpc_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await pb_grpc.SessionServiceStub(channel).Start(pb.StartRequest(call_id="p"), timeout=5)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_http_over_tls_with_httpx(tls_server: Served, pki: Pki) -> None:
    assert tls_server.http_url.startswith("https://")
    async with httpx.AsyncClient(verify=httpx_context(pki), timeout=10) as client:
        health = await client.get(f"{tls_server.http_url}/health")
        assert health.status_code == 200
        started = await client.post(f"{tls_server.http_url}/sessions", json={"call_id": "h"})
        assert started.status_code == 201, started.text
    # localhost is in the certificate too.
    async with httpx.AsyncClient(verify=httpx_context(pki), timeout=10) as client:
        ready = await client.get(f"https://localhost:{tls_server.http_port}/health")
        assert ready.status_code == 200
    async with httpx.AsyncClient(timeout=5) as plain:
        with pytest.raises(httpx.HTTPError):
            await plain.get(f"http://{HOST}:{tls_server.http_port}/health")


# ------------------------------------------------------------------ mTLS


async def test_mtls_admits_a_client_certificate_of_the_ca(mtls_server: Served, pki: Pki) -> None:
    reply = await mtls_server.stub.start(StartRequest(call_id="mtls-grpclib"), timeout=10)
    assert reply.session_id
    assert await grpcio_start(mtls_server.grpc_port, credentials(pki, client=True), "mtls-grpcio")
    context = httpx_context(pki, pki.client_cert, pki.client_key)
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        assert (await client.get(f"{mtls_server.http_url}/health")).status_code == 200


async def _refused_grpclib(port: int, context: ssl.SSLContext) -> None:
    channel = Channel(HOST, port, ssl=context)
    try:
        # TLS 1.3: the server's refusal arrives after the client's handshake, as an alert
        # on the first read, or as the connection closing.
        with pytest.raises((ssl.SSLError, StreamTerminatedError, ConnectionError, OSError)):
            await SessionServiceStub(channel).start(StartRequest(call_id="refused"), timeout=5)
    finally:
        channel.close()


@pytest.mark.parametrize("who", ["no certificate", "another CA's certificate"])
async def test_mtls_refuses_clients_without_a_certificate_of_the_ca(
    mtls_server: Served, pki: Pki, who: str
) -> None:
    if who == "no certificate":
        grpclib_context = client_context(pki.ca)
        grpcio_credentials = credentials(pki)
        httpx_ssl = httpx_context(pki)
    else:
        grpclib_context = client_context(pki.ca, pki.other_client_cert, pki.other_client_key)
        grpcio_credentials = credentials(pki, stranger=True)
        httpx_ssl = httpx_context(pki, pki.other_client_cert, pki.other_client_key)
    await _refused_grpclib(mtls_server.grpc_port, grpclib_context)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await grpcio_start(mtls_server.grpc_port, grpcio_credentials, "refused")
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    async with httpx.AsyncClient(verify=httpx_ssl, timeout=5) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get(f"{mtls_server.http_url}/health")
    # The server goes on serving the clients it admits.
    assert (await mtls_server.stub.start(StartRequest(call_id="after"), timeout=10)).session_id


# --------------------------------------------------------------- gateway


async def test_standalone_gateway_dials_an_mtls_upstream(mtls_server: Served, pki: Pki) -> None:
    upstream_ssl = client_context(pki.ca, pki.client_cert, pki.client_key)
    upstream = session_upstream(HOST, mtls_server.grpc_port, timeout=10, ssl=upstream_ssl)
    server = HttpServer(gateway_app(upstream), HOST, 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://{HOST}:{server.port}", timeout=10) as http:
            assert (await http.get("/ready")).status_code == 200  # upstream health over mTLS
            started = await http.post("/sessions", json={"call_id": "via-gateway"})
            assert started.status_code == 201, started.text
    finally:
        await server.stop(2)
        await upstream.aclose()
    # Without its client certificate the gateway reaches nothing: not ready.
    bare = session_upstream(HOST, mtls_server.grpc_port, timeout=5, ssl=client_context(pki.ca))
    try:
        assert await bare.ready() is False
    finally:
        await bare.aclose()


# ----------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("files", "text"),
    [
        (lambda p: TlsFiles(p.server_cert, p.wrong_key), "does not match certificate"),
        (lambda p: TlsFiles(p.server_cert + ".missing", p.server_key), "cannot read TLS certificate file"),
        (lambda p: TlsFiles(p.server_cert, p.server_key + ".missing"), "cannot read TLS key file"),
        (lambda p: TlsFiles(p.not_pem, p.server_key), "cannot load TLS certificate"),
        (lambda p: TlsFiles(p.server_cert, p.server_key, p.not_pem), "cannot load TLS client CA"),
    ],
)  # fmt: skip
async def test_unusable_files_fail_the_start_before_any_port_listens(
    pki: Pki, files: object, text: str
) -> None:
    tls = files(pki)  # type: ignore[operator]
    with pytest.raises(TlsError, match=text) as raised:
        tls.context()
    assert "\n" not in str(raised.value)
    options = open_options(tls_cert=tls.cert, tls_key=tls.key, tls_client_ca=tls.client_ca)
    launcher = ServerAgents().launcher()
    with pytest.raises(TlsError, match=text):
        async with serving(launcher, options):
            pass
    assert not launcher.started


async def test_a_tls_handshake_never_finished_is_dropped_after_the_handshake_timeout(
    pki: Pki,
) -> None:
    """A peer that connects and sends nothing holds its connection handshake_timeout at most
    (asyncio's own bound is 60 s), so silent TLS connections cannot pile up."""
    options = tls_options(pki)
    options = dataclasses.replace(
        options, grpc_limits=dataclasses.replace(options.grpc_limits, handshake_timeout=0.5)
    )
    async with serving(ServerAgents().launcher(), options, http=False) as served:
        reader, writer = await asyncio.open_connection(HOST, served.grpc_port)
        try:
            # No ClientHello: the server must hang up within a few handshake timeouts.
            assert await asyncio.wait_for(reader.read(), timeout=5) == b""
        finally:
            writer.close()
