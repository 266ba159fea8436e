-- Register sessions a node runs into a Redis that lost them (issue 14).
--
-- KEYS[1] counts  HASH node id -> admitted sessions that node holds
-- KEYS[2] owned   SET the session ids this node holds
-- KEYS[3] sessions  ZSET every held session (ListSessions)
-- ARGV: node_id, then per session: session id, call key, record key,
--       record JSON, idempotency key ("" for none), call sessions key,
--       started_at (s)
--
-- No limit is checked: these sessions run already. A session registered
-- twice (Redis kept it after all) takes one slot.
local node = ARGV[1]
local added = 0
for i = 2, #ARGV, 7 do
  local session, call_key, record_key = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  redis.call("SET", record_key, ARGV[i + 3])
  if redis.call("HSET", call_key, session, node) == 1 then
    redis.call("HINCRBY", KEYS[1], node, 1)
    added = added + 1
  end
  redis.call("SADD", KEYS[2], session)
  redis.call("ZADD", KEYS[3], ARGV[i + 6], session)
  redis.call("ZADD", ARGV[i + 5], ARGV[i + 6], session)
  if ARGV[i + 4] ~= "" then
    redis.call("SET", ARGV[i + 4], session, "NX")
  end
end
return added
