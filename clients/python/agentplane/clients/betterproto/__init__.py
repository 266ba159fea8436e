# Generated from proto/ by scripts/generate_clients.py: do not edit. Regenerate with ./dev generate.
"""agentplane's SessionService as betterproto2 dataclasses (generated).

    from agentplane.clients.betterproto import SessionServiceStub, StartRequest
    from grpclib.client import Channel

    async with Channel("localhost", 50051) as channel:
        stub = SessionServiceStub(channel)
        reply = await stub.start(StartRequest(call_id="my-call-123"), timeout=10)

`SessionServiceStub` is an async grpclib client; `SessionServiceBase` is the
grpclib server base. The `google` subpackage holds betterproto2's copies of the
well-known types and google.api; it is only ever imported relatively, so it never
shadows the real `google` package.
"""

# The descriptors of agentplane.v1 depend on these files; load them first.
from .google import protobuf as _google_protobuf  # noqa: F401
from .google import api as _google_api  # noqa: F401
from .agentplane import v1 as _v1
from .agentplane.v1 import *  # noqa: F403

__all__ = list(_v1.__all__)
