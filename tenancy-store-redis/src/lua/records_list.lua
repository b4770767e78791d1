-- One page of a tenant's collection, in id order, in one step.
--
-- KEYS[1]  records: id -> JSON
-- KEYS[2]  order: sorted set of ids, score 0
-- ARGV[1]  the lexical start ('-' for the first page, '(' .. id after one)
-- ARGV[2]  the page size
--
-- Returns id, JSON, id, JSON, … in id order.
local ids = redis.call('ZRANGEBYLEX', KEYS[2], ARGV[1], '+', 'LIMIT', 0, tonumber(ARGV[2]))
if #ids == 0 then
  return {}
end
local out = {}
for i, json in ipairs(redis.call('HMGET', KEYS[1], unpack(ids))) do
  if json then
    out[#out + 1] = ids[i]
    out[#out + 1] = json
  end
end
return out
