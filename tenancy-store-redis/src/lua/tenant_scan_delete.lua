-- Deletes one batch of a tenant's keys matching a pattern, on the node that
-- holds the tenant's slot. Every key the pattern can match carries the
-- tenant's hash tag, so every key deleted is in the slot of KEYS[1].
--
-- KEYS[1]  a key in the tenant's slot (routes the script to its node)
-- ARGV[1]  the SCAN cursor ('0' to start)
-- ARGV[2]  the MATCH pattern (the tenant's tag inside, glob characters of
--          the prefix escaped)
-- ARGV[3]  how many keys to look at in this batch (SCAN's COUNT)
--
-- Returns {next cursor ('0' when done), keys deleted}.
local reply = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', tonumber(ARGV[3]))
local deleted = 0
for _, key in ipairs(reply[2]) do
  deleted = deleted + redis.call('DEL', key)
end
return {reply[1], deleted}
