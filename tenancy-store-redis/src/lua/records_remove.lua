-- Removes one record of a tenant's collection, and frees its unique key.
--
-- KEYS[1]  records, KEYS[2] order, KEYS[3] unique (see records_insert.lua)
-- ARGV[1]  the id
-- ARGV[2]  the JSON the record must still have ('' for any)
--
-- Returns 1 when removed, 0 when there was none (or it changed).
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZREM', KEYS[2], ARGV[1])
local unique = redis.call('HGET', KEYS[3], 'i:' .. ARGV[1])
if unique then
  redis.call('HDEL', KEYS[3], 'u:' .. unique, 'i:' .. ARGV[1])
end
return 1
