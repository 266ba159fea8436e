"""SessionService's behaviour, written once for every transport.

``SessionAPI`` (``api``) takes protobuf requests and a ``RequestContext`` and
answers protobuf responses; ``auth`` decides who may do what; ``convert`` turns
core records and events into messages; ``status`` is the one table from core
errors to ``google.rpc.Status``. The grpclib adapter (``agentplane.rpc``) and
the embedded HTTP gateway (``agentplane.http``) only translate to and from it.
"""
