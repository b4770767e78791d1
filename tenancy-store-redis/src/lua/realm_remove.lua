-- Removes a tenant's realm and frees its issuer (keys as in realm_put.lua).
--
-- KEYS[1]  issuer -> claim
-- KEYS[2]  tenant id -> issuer
-- ARGV[1]  the tenant id
--
-- Returns 1 when the tenant had a realm, 0 otherwise.
local issuer = redis.call('HGET', KEYS[2], ARGV[1])
if not issuer then
  return 0
end
redis.call('HDEL', KEYS[1], issuer)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
