-- Replaces one record of a tenant's collection if it is still what the
-- caller read (compare and set).
--
-- KEYS[1]  records: id -> JSON
-- ARGV[1]  the id
-- ARGV[2]  the JSON the caller read
-- ARGV[3]  the new JSON
--
-- Returns 1 when replaced, 0 when the record is gone or changed.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
