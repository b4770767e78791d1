-- Changes one API key record, only if it exists and belongs to the tenant.
--
-- KEYS[1]  the record: <prefix>:apikey:<digest hex>
-- ARGV[1]  the tenant that must own the record
-- ARGV[2]  'revoke', 'expiry' or 'touch'
-- ARGV[3]  the time stamp (RFC 3339), or '' to clear an expiry
-- ARGV[4]  for 'touch': the time stamp in unix microseconds
--
-- revoke keeps the first revocation time; touch keeps the latest use.
-- Returns 1 when the record exists and belongs to the tenant, else 0.
local owner = redis.call('HGET', KEYS[1], 'tenant')
if owner ~= ARGV[1] then
  return 0
end
local op = ARGV[2]
if op == 'revoke' then
  if (redis.call('HGET', KEYS[1], 'revoked_at') or '') == '' then
    redis.call('HSET', KEYS[1], 'revoked_at', ARGV[3])
  end
elseif op == 'expiry' then
  redis.call('HSET', KEYS[1], 'expires_at', ARGV[3])
elseif op == 'touch' then
  local last = redis.call('HGET', KEYS[1], 'last_used_us') or ''
  if last == '' or tonumber(last) < tonumber(ARGV[4]) then
    redis.call('HSET', KEYS[1], 'last_used_at', ARGV[3], 'last_used_us', ARGV[4])
  end
else
  return redis.error_reply('unknown api key update: ' .. op)
end
return 1
