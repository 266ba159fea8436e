"""Python clients for agentplane's SessionService (proto/agentplane/v1).

Both subpackages are generated from proto/ by `./dev generate`
(scripts/generate_clients.py) and speak the same wire format; pick by stack:

* `agentplane.clients.betterproto`: betterproto2 dataclasses with an async
  grpclib client (`SessionServiceStub`) and server base (`SessionServiceBase`).
  Meant for Python backends that talk to agentplane over gRPC::

      from grpclib.client import Channel
      from agentplane.clients.betterproto import SessionServiceStub, StartRequest

      async with Channel("localhost", 50051) as channel:
          session = await SessionServiceStub(channel).start(StartRequest(call_id="c1"))

* `agentplane.clients.grpcio`: protobuf message classes (`session_pb2`,
  `session_service_pb2`), grpcio stubs for `grpc` and `grpc.aio` channels
  (`session_service_pb2_grpc`) and grpclib stubs and server bases over the same
  protobuf classes (`session_service_grpc`). Use it where protobuf classes are
  needed: grpcio applications, protojson via `google.protobuf.json_format`,
  descriptors and reflection.

This package imports neither; import the one you use.
"""
