-- Removes a tenant's whole collection.
--
-- KEYS[1]  records, KEYS[2] order, KEYS[3] unique (see records_insert.lua)
--
-- Returns how many records there were.
local count = redis.call('HLEN', KEYS[1])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return count
