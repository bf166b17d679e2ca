-- fusebox fleet percentiles: one hash read, bounded, in one atomic call.
--
-- KEYS[1]  <prefix>:{hist:<tracker>:<series>}, field = instance id,
--          value = its histogram (fleet/codec.rs)
-- ARGV[1]  the most fields returned (MAX_INSTANCES)
-- ARGV[2]  the longest value returned, in bytes (MAX_VALUE_LEN); also
--          the longest field name
--
-- A field whose name or value is longer cannot be any instance's (every
-- format version keeps its values within ARGV[2]): it is deleted here,
-- never sent, and counted.
--
-- Reply: {fields in the hash when read, {field, value, field, value, ...}
-- (at most ARGV[1] fields), deleted}
local key = KEYS[1]
local most = tonumber(ARGV[1])
local longest = tonumber(ARGV[2])
local n = redis.call('HLEN', key)
local out, seen, count, deleted = {}, {}, 0, 0
local cursor = '0'
repeat
  local r = redis.call('HSCAN', key, cursor, 'COUNT', 256)
  cursor = r[1]
  local page = r[2]
  for i = 1, #page, 2 do
    local f, v = page[i], page[i + 1]
    if not seen[f] then
      seen[f] = true
      if #f > longest or #v > longest then
        deleted = deleted + redis.call('HDEL', key, f)
      elseif count < most then
        count = count + 1
        out[#out + 1] = f
        out[#out + 1] = v
      end
    end
  end
until cursor == '0' or count >= most
return {n, out, deleted}
