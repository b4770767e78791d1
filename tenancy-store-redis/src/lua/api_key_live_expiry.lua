-- Moves the expiry of a live key in its tenant's live-key set; a key that
-- is not there (revoked) stays out.
--
-- KEYS[1]  the tenant's live keys: key id -> expiry in unix ms (0: none)
-- ARGV[1]  the key id
-- ARGV[2]  the new expiry in unix ms (0: none)
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
return 1
