-- Creates an API key record (a hash) unless its digest is taken.
--
-- KEYS[1]  the record: <prefix>:apikey:<digest hex>
-- ARGV     field, value pairs
--
-- Returns 1 when created, 0 when the digest is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
