"""Certificates made in the test: a CA, a server certificate for 127.0.0.1 and localhost,
a client certificate, and the same from a second CA (which the server does not trust).

Real PEM files (``cryptography``), written under a temporary folder; each
key is an EC P-256 key, each certificate valid from a day ago for a week.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class _Issuer:
    name: x509.Name
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Pki:
    """The files of a test PKI (every path a str, as the options take them)."""

    ca: str  # the CA the server trusts for clients, and clients trust for the server
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca: str  # a second CA nobody trusts
    other_client_cert: str  # issued by other_ca
    other_client_key: str
    wrong_key: str  # a key of no certificate here: mismatches server_cert
    not_pem: str  # a file that is no PEM at all


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(
        now + datetime.timedelta(days=7)
    )


def _ca(common_name: str) -> tuple[_Issuer, x509.Certificate]:
    key = _key()
    name = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    certificate = _validity(builder).sign(key, hashes.SHA256())
    return _Issuer(name, key), certificate


def _leaf(
    issuer: _Issuer, common_name: str, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, _validity(builder).sign(issuer.key, hashes.SHA256())


def _write_cert(path: Path, certificate: x509.Certificate) -> str:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(path)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> str:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    return str(path)


def make_pki(folder: Path) -> Pki:
    """Write a test PKI's files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_cert = _ca("agentplane test CA")
    other, other_cert = _ca("another CA")
    server_key, server_cert = _leaf(ca, "agentplane test server", server=True)
    client_key, client_cert = _leaf(ca, "agentplane test client", server=False)
    other_client_key, other_client_cert = _leaf(other, "a stranger", server=False)
    (folder / "not.pem").write_text("this is not a certificate\n")
    return Pki(
        ca=_write_cert(folder / "ca.pem", ca_cert),
        server_cert=_write_cert(folder / "server.pem", server_cert),
        server_key=_write_key(folder / "server.key", server_key),
        client_cert=_write_cert(folder / "client.pem", client_cert),
        client_key=_write_key(folder / "client.key", client_key),
        other_ca=_write_cert(folder / "other-ca.pem", other_cert),
        other_client_cert=_write_cert(folder / "other-client.pem", other_client_cert),
        other_client_key=_write_key(folder / "other-client.key", other_client_key),
        wrong_key=_write_key(folder / "wrong.key", _key()),
        not_pem=str(folder / "not.pem"),
    )
