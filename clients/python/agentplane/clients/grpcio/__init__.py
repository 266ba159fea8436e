# Generated from proto/ by scripts/generate_clients.py: do not edit. Regenerate with ./dev generate.
"""agentplane's SessionService for the protobuf/grpcio stack (generated).

Modules, one set per file in proto/agentplane/v1/:

* `session_pb2`, `session_service_pb2`: protobuf message classes (with `.pyi`
  stubs). Use them with `google.protobuf.json_format` for protojson.
* `session_service_pb2_grpc`: grpcio stubs and servicer bases. The stub works on
  both `grpc.insecure_channel(...)` and `grpc.aio.insecure_channel(...)`:

      from agentplane.clients.grpcio import session_service_pb2 as pb
      from agentplane.clients.grpcio import session_service_pb2_grpc as pb_grpc
      async with grpc.aio.insecure_channel("localhost:50051") as channel:
          stub = pb_grpc.SessionServiceStub(channel)
          reply = await stub.Start(pb.StartRequest(call_id="my-call-123"))

* `session_service_grpc`: grpclib stubs (`SessionServiceStub(grpclib.client.Channel)`)
  and abstract server bases (`SessionServiceBase`) over the same protobuf classes.

Nothing is imported here: import the module you need.
"""
