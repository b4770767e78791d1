-- Claims a key id in a tenant's index, within the tenant's live-key limit:
-- the count and the claim are one step, so concurrent issues never pass
-- the limit together. Both keys carry the tenant's hash tag (one slot).
--
-- KEYS[1]  the tenant's index: key id -> digest hex
-- KEYS[2]  the tenant's live keys: key id -> expiry in unix ms (0: none)
-- ARGV[1]  the key id
-- ARGV[2]  its digest hex
-- ARGV[3]  its expiry in unix ms (0: none)
-- ARGV[4]  now in unix ms
-- ARGV[5]  the most live keys allowed (-1: no limit)
-- ARGV[6]  the key id of its parent, the key that issued it ('' for none)
--
-- Returns 1 when claimed, 0 at the limit (nothing written), -1 when the key
-- id is taken, -2 when the parent is not live (revoked or expired; nothing
-- written). Expired entries met on the way are dropped. A revocation takes
-- the key out of the live keys before it marks the record, so a child is
-- claimed either before that or never. One claimed before may not have its
-- record written yet when the revocation lists the tenant's keys: the
-- issuer reads the parent again once the record is written, and revokes
-- the child if the parent is gone (TenancyAdmin::issue_api_key_as).
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  return -1
end
if ARGV[6] ~= '' then
  local expiry = redis.call('HGET', KEYS[2], ARGV[6])
  if not expiry then
    return -2
  end
  expiry = tonumber(expiry)
  if expiry ~= 0 and expiry <= tonumber(ARGV[4]) then
    return -2
  end
end
local limit = tonumber(ARGV[5])
if limit >= 0 then
  local now = tonumber(ARGV[4])
  local live = redis.call('HGETALL', KEYS[2])
  local count = 0
  for i = 1, #live, 2 do
    local expiry = tonumber(live[i + 1])
    if expiry ~= 0 and expiry <= now then
      redis.call('HDEL', KEYS[2], live[i])
    else
      count = count + 1
    end
  end
  if count >= limit then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
