-- Give back a session's admission slot, once (issue 14).
--
-- KEYS[1] counts  HASH node id -> admitted sessions that node holds
-- KEYS[2] call    HASH session id -> node id
-- KEYS[3] prefix of the per-node "owned" sets (the owner's id is appended)
-- ARGV: session_id
--
-- The slot is the call-hash entry: removing it is what makes the release
-- happen once, whoever calls it (the owner, or a node sweeping a dead one).
local owner = redis.call("HGET", KEYS[2], ARGV[1])
if not owner then
  return 0
end
redis.call("HDEL", KEYS[2], ARGV[1])
redis.call("SREM", KEYS[3] .. owner, ARGV[1])
if tonumber(redis.call("HINCRBY", KEYS[1], owner, -1)) <= 0 then
  redis.call("HDEL", KEYS[1], owner)
end
return 1
