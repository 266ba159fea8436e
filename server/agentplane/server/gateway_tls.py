"""``agentplane gateway``'s TLS: HTTPS on its own port, and TLS (or mTLS) to its upstream.

``--tls-cert``/``--tls-key`` (``--tls-client-ca``: mutual TLS) are ``serve``'s
flags and variables, meaning the same for the gateway's HTTP port.
``--upstream-tls-ca`` trusts that CA for the upstream's certificate (else the
system's CAs, with ``--upstream-tls``); ``--upstream-tls-cert`` and
``--upstream-tls-key`` present a client certificate (an upstream serving
``--tls-client-ca``). Any ``--upstream-tls-*`` turns TLS to the upstream on.
The upstream's certificate must name the host of ``--upstream``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import click

from agentplane.net import TlsError, TlsFiles, client_context

from .config import PATH


def _option(
    flag: str, help: str, **extra: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    extra.setdefault("default", None)
    return click.option(
        f"--{flag}",
        flag.replace("-", "_"),
        envvar="AGENTPLANE_" + flag.upper().replace("-", "_"),
        show_envvar=True,
        help=help,
        **extra,
    )


def gateway_tls_options() -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    options = [
        _option("tls-cert", "PEM certificate chain: serve HTTPS (needs --tls-key).", type=PATH),
        _option("tls-key", "PEM private key of --tls-cert.", type=PATH),
        _option("tls-client-ca", "PEM CA: mutual TLS, clients must present a certificate it "
                "issued.", type=PATH),
        _option("upstream-tls", "Dial the upstream over TLS, trusting the system's CAs.",
                is_flag=True, default=False),
        _option("upstream-tls-ca", "PEM CA the upstream's certificate must chain to (turns TLS "
                "to the upstream on).", type=PATH),
        _option("upstream-tls-cert", "PEM client certificate for an upstream that requires one "
                "(mutual TLS; needs --upstream-tls-key).", type=PATH),
        _option("upstream-tls-key", "PEM private key of --upstream-tls-cert.", type=PATH),
    ]  # fmt: skip

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def gateway_tls(
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    upstream_tls: bool,
    upstream_tls_ca: str | None,
    upstream_tls_cert: str | None,
    upstream_tls_key: str | None,
) -> tuple[TlsFiles | None, ssl.SSLContext | None]:
    """The gateway's own TLS files and the upstream's client context; ClickException if unusable."""
    try:
        served: TlsFiles | None = None
        if tls_cert is not None or tls_key is not None or tls_client_ca is not None:
            if tls_cert is None or tls_key is None:
                raise TlsError(
                    "--tls-cert and --tls-key go together (and --tls-client-ca needs both)"
                )
            served = TlsFiles(tls_cert, tls_key, tls_client_ca)
            served.context()
        upstream_ssl: ssl.SSLContext | None = None
        if upstream_tls or any(
            v is not None for v in (upstream_tls_ca, upstream_tls_cert, upstream_tls_key)
        ):
            upstream_ssl = client_context(upstream_tls_ca, upstream_tls_cert, upstream_tls_key)
    except TlsError as error:
        raise click.ClickException(str(error)) from None
    return served, upstream_ssl
