"""Many agentplane nodes acting as one, on Redis (issue 14; being built).

What is here so far: the cluster-wide ``SessionRegistry``
(:class:`RedisSessionRegistry`: admission in one Lua script, slots held as
leases of the owning node) and the node lease (:class:`NodeLease`: heartbeat,
fencing of a node declared dead, and claiming a dead node's sessions), and
the cluster's event log (:class:`RedisEventStream`: a capped stream whose
cursors are given in the same atomic step as the append, with an epoch that
changes when Redis loses its data).

redis-py is an optional extra (``pip install agentplane[redis]``): nothing
imports it until a cluster is configured. One Redis server (or a primary with
replicas) holds a cluster: the scripts touch keys they compute, which Redis
Cluster does not allow.
"""

from .events import RedisEventStream
from .keys import ClusterKeys
from .node import NodeLease
from .records import record_from_json, record_to_json
from .registry import RedisSessionRegistry

__all__ = [
    "ClusterKeys",
    "NodeLease",
    "RedisEventStream",
    "RedisSessionRegistry",
    "record_from_json",
    "record_to_json",
]
