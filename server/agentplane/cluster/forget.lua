-- Forget a session: its record, its listing entries, and its idempotency
-- key if still its own (issue 14).
--
-- KEYS[1] record  STRING the session's record
-- KEYS[2] idem    STRING session id for its idempotency key (may not exist)
-- KEYS[3] sessions       ZSET every held session (ListSessions)
-- KEYS[4] call sessions  ZSET the call's held sessions (ListSessions)
-- ARGV: session_id
if redis.call("GET", KEYS[2]) == ARGV[1] then
  redis.call("DEL", KEYS[2])
end
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("ZREM", KEYS[4], ARGV[1])
return redis.call("DEL", KEYS[1])
