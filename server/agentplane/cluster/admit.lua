-- Admit one session across the cluster, atomically (issue 14).
--
-- KEYS[1] nodes   ZSET node id -> lease expiry (ms)
-- KEYS[2] counts  HASH node id -> admitted sessions that node holds
-- KEYS[3] call    HASH session id -> node id, the sessions of one call
-- KEYS[4] rate    ZSET session id -> admission time (ms), the last minute
-- KEYS[5] idem    STRING session id for an idempotency key ("" key: none)
-- KEYS[6] record  STRING the session's record (JSON)
-- KEYS[7] owned   SET the session ids this node holds
-- KEYS[8] sessions       ZSET session id -> started_at, every held session
-- KEYS[9] call sessions  ZSET session id -> started_at, the call's held sessions
-- ARGV: node_id, session_id, max_concurrent (0: off),
--       max_per_call (0: off), permits_per_minute (0: off), record_json,
--       has_idem (0/1), max_per_node (0: off), started_at (s)
--
-- Returns {"ok"} | {"dup", session_id} | {"fenced"} | {"node_full", count}
--       | {"full", count} | {"call_full", count} | {"rate", retry_after_ms}
--
-- A node's slots count while its lease is live: a dead node's sessions stop
-- counting when its lease lapses, with no one's help. Nothing here scans
-- more than the live nodes and the sessions of one call.
-- Redis's own clock, so nodes whose clocks disagree still agree on leases.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local node = ARGV[1]
local session = ARGV[2]
local max_concurrent = tonumber(ARGV[3])
local max_per_call = tonumber(ARGV[4])
local per_minute = tonumber(ARGV[5])

local lease = redis.call("ZSCORE", KEYS[1], node)
if not lease or tonumber(lease) < now then
  return {"fenced"}
end

if ARGV[7] == "1" then
  local existing = redis.call("GET", KEYS[5])
  if existing then
    return {"dup", existing}
  end
end

local max_per_node = tonumber(ARGV[8])
if max_per_node > 0 then
  local mine = tonumber(redis.call("HGET", KEYS[2], node)) or 0
  if mine >= max_per_node then
    return {"node_full", tostring(mine)}
  end
end

local live = {}
for _, id in ipairs(redis.call("ZRANGEBYSCORE", KEYS[1], now, "+inf")) do
  live[id] = true
end

if max_concurrent > 0 then
  local total = 0
  for id, _ in pairs(live) do
    total = total + (tonumber(redis.call("HGET", KEYS[2], id)) or 0)
  end
  if total >= max_concurrent then
    return {"full", tostring(total)}
  end
end

local in_call = 0
local members = redis.call("HGETALL", KEYS[3])
for i = 1, #members, 2 do
  if live[members[i + 1]] then
    in_call = in_call + 1
  else
    redis.call("HDEL", KEYS[3], members[i]) -- a dead node's session
  end
end
if max_per_call > 0 and in_call >= max_per_call then
  return {"call_full", tostring(in_call)}
end

if per_minute > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", now - 60000)
  if redis.call("ZCARD", KEYS[4]) >= per_minute then
    local oldest = redis.call("ZRANGE", KEYS[4], 0, 0, "WITHSCORES")
    return {"rate", tostring(tonumber(oldest[2]) + 60000 - now)}
  end
  redis.call("ZADD", KEYS[4], now, session)
  redis.call("PEXPIRE", KEYS[4], 60000)
end

redis.call("HINCRBY", KEYS[2], node, 1)
redis.call("HSET", KEYS[3], session, node)
redis.call("SET", KEYS[6], ARGV[6])
redis.call("SADD", KEYS[7], session)
redis.call("ZADD", KEYS[8], ARGV[9], session)
redis.call("ZADD", KEYS[9], ARGV[9], session)
if ARGV[7] == "1" then
  redis.call("SET", KEYS[5], session) -- expires with the record, once it ended
end
return {"ok"}
