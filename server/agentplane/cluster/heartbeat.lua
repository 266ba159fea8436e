-- Renew a node's lease and what it advertises, unless it was declared dead (issue 14).
--
-- KEYS[1] nodes  ZSET node id -> lease expiry (ms)
-- KEYS[2] info   HASH what the node advertises (address, capacity, load, draining)
-- KEYS[3] dead   ZSET node id -> when it was declared dead (ms)
-- KEYS[4] beat   STRING when any node last renewed (ms)
-- KEYS[5] since  STRING since when this Redis holds the cluster's sessions (ms)
-- ARGV: node_id, lease_ms, beaten_before (0/1), then field, value pairs for info
--
-- Returns "ok"; "new" when the node held no lease before (Redis lost its
-- data, or this is the first beat): it must register what it runs; or
-- "fenced": the node was declared dead (its sessions were ended NODE_LOST
-- by another node) and must stop everything it runs and come back under a
-- new id, never resurrect them.
--
-- When no node at all renewed for longer than a lease, Redis was away (down,
-- or restarted from a snapshot) or every node was: nobody could beat, so
-- every lease is moved on by that silence. Otherwise the first node back
-- would declare all the others dead for heartbeats they could not send.
--
-- "since" tells readers whether a session missing here may only be missing
-- for now: a Redis that lost its data gets it set to now by the first node
-- that had beaten before, and within a lease every live node has beaten and
-- registered its sessions again. A brand-new cluster starts settled.
-- Redis's own clock, so nodes whose clocks disagree still agree on leases.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node = ARGV[1]
local lease_ms = tonumber(ARGV[2])
if redis.call("ZSCORE", KEYS[3], node) then
  return "fenced"
end
local last = tonumber(redis.call("GET", KEYS[4]))
if last and now - last > lease_ms then
  local silence = now - last
  local leases = redis.call("ZRANGE", KEYS[1], 0, -1, "WITHSCORES")
  for i = 1, #leases, 2 do
    redis.call("ZADD", KEYS[1], tonumber(leases[i + 1]) + silence, leases[i])
  end
end
redis.call("SET", KEYS[4], now)
if redis.call("EXISTS", KEYS[5]) == 0 then
  if ARGV[3] == "1" then
    redis.call("SET", KEYS[5], now)
  else
    redis.call("SET", KEYS[5], now - lease_ms)
  end
end
local added = redis.call("ZADD", KEYS[1], now + lease_ms, node)
if #ARGV > 3 then
  redis.call("HSET", KEYS[2], unpack(ARGV, 4))
end
redis.call("PEXPIRE", KEYS[2], lease_ms * 3)
if added == 1 then
  return "new"
end
return "ok"
