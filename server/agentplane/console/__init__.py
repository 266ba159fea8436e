"""A client CLI for agentplane servers: ``agentplane sessions list | get | start | close | metrics | watch``.

``connection`` (where and how to connect: server, token, deadline, TLS),
``render`` (tables and protojson), ``times`` (time arguments), ``failures``
(statuses to stderr lines and exit codes), ``watching`` (a resumable
StreamEvents watch) and ``commands`` (the click group, added to ``agentplane``).
"""

from __future__ import annotations

from .commands import sessions

__all__ = ["sessions"]
