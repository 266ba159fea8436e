"""The cluster benchmark: agentplane nodes sharing a real redis-server (``./dev bench --cluster``).

One run alternates rounds of three deployments on the same core: one node
with the embedded registry (no Redis, the baseline), one node on Redis, and
three nodes on Redis. See bench/README.md, "The cluster benchmark".
"""
