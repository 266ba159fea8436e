-- Declare a node dead if its lease has lapsed; exactly one caller wins (issue 14).
--
-- KEYS[1] nodes  ZSET node id -> lease expiry (ms)
-- KEYS[2] dead   ZSET node id -> when it was declared dead (ms)
-- ARGV: node_id, keep_ms (how long the fence is remembered)
--
-- Returns 1 to the one caller that must end the node's sessions (NODE_LOST)
-- and free their slots, 0 to everyone else.
-- Redis's own clock, so nodes whose clocks disagree still agree on leases.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = redis.call("ZSCORE", KEYS[1], ARGV[1])
if not lease or tonumber(lease) >= now then
  return 0
end
redis.call("ZREM", KEYS[1], ARGV[1])
redis.call("ZADD", KEYS[2], now, ARGV[1])
redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", now - tonumber(ARGV[2]))
return 1
