-- Charges a period counter if the total stays within the limit.
--
-- KEYS[1]  the counter
-- ARGV[1]  the amount (a non-negative integer)
-- ARGV[2]  the limit, or the empty string for no limit
-- ARGV[3]  when the counter expires: unix milliseconds (window end + margin)
--
-- Returns {1, total} when charged, {0, total} when refused (nothing charged).
-- Totals are returned as the stored decimal string, so they stay exact.
local current = redis.call('GET', KEYS[1]) or '0'
if ARGV[2] ~= '' and tonumber(current) + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, current}
end
redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIREAT', KEYS[1], ARGV[3])
return {1, redis.call('GET', KEYS[1])}
