-- fusebox fleet percentiles: compare-and-delete of stale or corrupt fields.
--
-- KEYS[1]  the series' hash (one key: one Cluster slot)
-- ARGV     field, sha1hex of the value it held when read, field, ...
--
-- A field is deleted only if it still holds the value read: one that its
-- instance pushed again since (a fresh value) stays.
--
-- Reply: the number of fields deleted.
local key = KEYS[1]
local n = 0
for i = 1, #ARGV, 2 do
  local v = redis.call('HGET', key, ARGV[i])
  if v and redis.sha1hex(v) == ARGV[i + 1] then
    n = n + redis.call('HDEL', key, ARGV[i])
  end
end
return n
