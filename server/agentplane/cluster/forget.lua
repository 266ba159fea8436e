-- Forget a session: its record, and its idempotency key if still its own (issue 14).
--
-- KEYS[1] record  STRING the session's record
-- KEYS[2] idem    STRING session id for its idempotency key (may not exist)
-- ARGV: session_id
if redis.call("GET", KEYS[2]) == ARGV[1] then
  redis.call("DEL", KEYS[2])
end
return redis.call("DEL", KEYS[1])
