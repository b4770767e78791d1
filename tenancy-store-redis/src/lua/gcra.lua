-- GCRA over several buckets at once: every bucket takes one cell, or none does.
--
-- KEYS[i]        the bucket keys (all of one tenant, so one Cluster slot)
-- ARGV[2i - 1]   bucket i's emission interval, whole microseconds (>= 1)
-- ARGV[2i]       bucket i's burst (>= 1)
--
-- A bucket stores its theoretical arrival time (TAT), in microseconds of the
-- server's clock, and expires once it would be full again. Time comes from
-- the server (TIME), so clients with skewed clocks share one budget.
--
-- Returns {allowed, then per bucket: allowed, remaining, reset_us, retry_us}.
if redis.replicate_commands then
  redis.replicate_commands()
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local result = {1}
local pending = {}
local order = {}
local all_allowed = true
for i = 1, #KEYS do
  local key = KEYS[i]
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local tat = pending[key]
  if tat == nil then
    tat = tonumber(redis.call('GET', key) or '0')
    order[#order + 1] = key
  end
  if tat < now then
    tat = now
  end
  local new_tat = tat + interval
  local allow_at = new_tat - interval * burst
  if now >= allow_at then
    pending[key] = new_tat
    result[#result + 1] = 1
    result[#result + 1] = math.floor((now - allow_at) / interval)
    result[#result + 1] = new_tat - now
    result[#result + 1] = 0
  else
    all_allowed = false
    pending[key] = tat
    result[#result + 1] = 0
    result[#result + 1] = 0
    result[#result + 1] = tat - now
    result[#result + 1] = allow_at - now
  end
end
if all_allowed then
  for _, key in ipairs(order) do
    local tat = pending[key]
    local ttl_ms = math.ceil((tat - now) / 1000)
    if ttl_ms < 1 then
      ttl_ms = 1
    end
    redis.call('SET', key, string.format('%d', tat), 'PX', ttl_ms)
  end
else
  result[1] = 0
end
return result
