-- Adds a record to one tenant's collection (members, teams) within the
-- collection's limit: the count, the uniqueness checks and the insert are
-- one step, so concurrent inserts never pass the limit together. All keys
-- carry the tenant's hash tag (one slot).
--
-- KEYS[1]  records: id -> JSON
-- KEYS[2]  order: sorted set of ids, score 0 (ordered by id)
-- KEYS[3]  unique: 'u:' .. unique key -> id, and 'i:' .. id -> unique key
-- ARGV[1]  the id
-- ARGV[2]  the record's JSON
-- ARGV[3]  its unique key ('' for none)
-- ARGV[4]  the most records allowed (-1: no limit)
--
-- Returns 1 when added, 0 at the limit, -1 when the id or the unique key is
-- taken (nothing written in either case).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return -1
end
if ARGV[3] ~= '' and redis.call('HEXISTS', KEYS[3], 'u:' .. ARGV[3]) == 1 then
  return -1
end
local limit = tonumber(ARGV[4])
if limit >= 0 and redis.call('HLEN', KEYS[1]) >= limit then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'u:' .. ARGV[3], ARGV[1], 'i:' .. ARGV[1], ARGV[3])
end
return 1
