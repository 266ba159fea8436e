-- Append events to the cluster's event stream; cursors are given here (issue 14).
--
-- KEYS[1] meta    HASH e: the stream's epoch, s: the last cursor given
-- KEYS[2] stream  STREAM entry id "<cursor>-1", fields "e": the event (JSON),
--                 "g": the epoch (a reader learns it from the entries it reads)
-- ARGV: epoch candidate, max length, then one event per argument
--
-- The cursor comes from the same atomic step as the append (as centrifuge's
-- Redis broker does), so cursors are dense and in stream order whichever
-- node appends. The epoch is made once per stream: a Redis that restarts
-- empty starts a new epoch, and a watcher resuming with the old one is told
-- of the gap. Returns {epoch, first cursor}.
redis.call("HSETNX", KEYS[1], "e", ARGV[1])
local epoch = redis.call("HGET", KEYS[1], "e")
local first = nil
for i = 3, #ARGV do
  local cursor = redis.call("HINCRBY", KEYS[1], "s", 1)
  first = first or cursor
  redis.call("XADD", KEYS[2], "MAXLEN", "~", ARGV[2], cursor .. "-1", "e", ARGV[i], "g", epoch)
end
return {epoch, first or 0}
