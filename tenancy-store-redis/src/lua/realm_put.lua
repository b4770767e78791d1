-- Sets a tenant's realm, freeing the issuer of the realm it had. An issuer
-- belongs to one tenant: the check and the claim are one step. Both keys
-- carry the hash tag {realms} (one slot).
--
-- KEYS[1]  issuer -> the realm's claim (JSON: tenant and realm)
-- KEYS[2]  tenant id -> its realm's issuer
-- ARGV[1]  the tenant id
-- ARGV[2]  the issuer
-- ARGV[3]  the claim JSON
-- ARGV[4]  the issuer as written, under which a realm set before issuers
--          were normalised is filed
--
-- Returns 1 when set, 0 when another tenant's realm has the issuer (nothing
-- written). Invariant: KEYS[1] has an issuer exactly when KEYS[2] maps one
-- tenant to it.
local previous = redis.call('HGET', KEYS[2], ARGV[1])
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 and previous ~= ARGV[2] then
  return 0
end
if ARGV[4] ~= ARGV[2] and redis.call('HEXISTS', KEYS[1], ARGV[4]) == 1
    and previous ~= ARGV[4] then
  return 0
end
if previous and previous ~= ARGV[2] then
  redis.call('HDEL', KEYS[1], previous)
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
