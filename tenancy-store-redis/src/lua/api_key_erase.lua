-- Deletes one API key record, only if it belongs to the tenant being
-- erased (a record is found by its digest, in a slot of its own).
--
-- KEYS[1]  the record: <prefix>:apikey:<digest hex>
-- ARGV[1]  the tenant that must own the record
--
-- Returns 1 when deleted, 0 when absent or another tenant's.
if redis.call('HGET', KEYS[1], 'tenant') ~= ARGV[1] then
  return 0
end
return redis.call('DEL', KEYS[1])
