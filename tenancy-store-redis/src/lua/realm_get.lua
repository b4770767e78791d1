-- The claim JSON of a tenant's realm, or nil (keys as in realm_put.lua).
--
-- KEYS[1]  issuer -> claim
-- KEYS[2]  tenant id -> issuer
-- ARGV[1]  the tenant id
local issuer = redis.call('HGET', KEYS[2], ARGV[1])
if not issuer then
  return false
end
return redis.call('HGET', KEYS[1], issuer)
