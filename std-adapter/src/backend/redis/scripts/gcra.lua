-- fusebox GCRA: one decision over several rules of one key, atomically.
--
-- KEYS[i]   the state key of rule i (all under one {hash tag})
-- ARGV[1]   n, the tokens asked for (0 <= n)
-- ARGV[2]   R, the number of rules (= #KEYS)
-- ARGV[3 + 3(i-1) ..]  rule i: scale, interval, burst, where the rule's
--           emission interval is `interval / scale` microseconds (scaled
--           units of 1/scale us, exactly as the core's `gcra` kernel)
-- ARGV[3 + 3R]  optional: "now" in microseconds, for deterministic tests
--           only; production never sends it and uses Redis TIME. Expiry
--           runs on Redis's real clock, so under a given "now" every key
--           lives one day longer than its refill time (it must not vanish
--           while the test's clock stands still).
--
-- State per rule key: "g1:<tat_us>:<frac>:<scale>:<interval>:<burst>",
-- the theoretical arrival time tat = tat_us * scale + frac scaled units
-- (0 <= frac < scale), written with PX = time until the bucket is full.
--
-- Arithmetic: Lua numbers are doubles; every value kept or computed here
-- is an integer below 2^53 (the caller keeps capacity = interval * burst
-- at most 2^52 scaled units and burst * T at most 2^47 us, Redis TIME in microseconds is ~2^50.6), and absolute times
-- stay below 2^53: now + burst * T (in us) < 2^53, i.e. until the year
-- 2250 (2255 less the longest refill time allowed, 2^47 us = 4.46 years);
-- past that the script refuses with an error rather than guess.
-- Absolute time is never multiplied by the scale: only the distance
-- tat - now is, after a range check. Divisions are corrected to exact
-- integer floors.
--
-- Reply: { allowed (0/1), retry_after_us, remaining, reset_us, rule (0-based
-- index of the binding rule), corrupt (how many keys held a bad value) }.
-- A corrupt value (wrong type, unparseable, out of range) is replaced by a
-- drained bucket: the request is denied and the rule refills from empty.

local MAX = 9007199254740991 -- 2^53 - 1
local SKEW_US = 60000000     -- a Redis clock going back this far still only denies
local MAX_DRAIN_US = 140737488355328 -- 2^47 us: the longest burst * T the caller sends

local function bad(msg)
  return redis.error_reply('ERR fusebox gcra: ' .. msg)
end

local function int(s)
  local v = tonumber(s)
  if v == nil or v ~= v or v < 0 or v > MAX or v ~= math.floor(v) then return nil end
  return v
end

-- floor(a / b) for integers 0 <= a < 2^53, 0 < b, exactly.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end
local function cdiv(a, b) return idiv(a + b - 1, b) end
local function fmt(v) return string.format('%.0f', v) end

local n = int(ARGV[1])
local rules = int(ARGV[2])
if n == nil or rules == nil or rules < 1 or rules ~= #KEYS then return bad('bad n or rule count') end
local now
local linger = 0
local at = ARGV[3 + 3 * rules]
if at ~= nil then
  linger = 86400000
  now = int(at)
  if now == nil then return bad('bad now') end
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local state = {}
local corrupt = 0
for i = 1, rules do
  local base = 3 + 3 * (i - 1)
  local scale, interval, burst = int(ARGV[base]), int(ARGV[base + 1]), int(ARGV[base + 2])
  if scale == nil or interval == nil or burst == nil or scale < 1 or scale > 65536
     or interval < 1 or burst < 1 or interval * burst > 4503599627370496
     or cdiv(interval * burst, scale) > MAX_DRAIN_US then
    return bad('bad rule ' .. i)
  end
  local capacity = interval * burst
  local tolerance = SKEW_US * scale
  if now + cdiv(capacity, scale) + SKEW_US > MAX then
    return bad('time out of range for rule ' .. i)
  end
  local ahead = 0
  local broken = false
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'table' then
    broken = true -- wrong type (or any other error reading it)
  elseif raw then
    local a, b, c, d, e = string.match(raw, '^g1:(%d+):(%d+):(%d+):(%d+):(%d+)$')
    local tat, frac, s, iv, bu = int(a), int(b), int(c), int(d), int(e)
    if tat == nil or frac == nil or s == nil or iv == nil or bu == nil or s < 1 or s > 65536
       or iv < 1 or frac >= s then
      broken = true
    elseif tat >= now then
      local dt = tat - now
      if dt > MAX_DRAIN_US + SKEW_US then
        broken = true -- no rule drains longer than 2^47 us (4.46 years)
      elseif s == scale and iv == interval and bu == burst
             and dt <= idiv(capacity + tolerance, scale) then
        ahead = dt * scale + frac -- the same quota: exact, as the core
      else
        -- The quota changed (or its burst was lowered): the drain carries
        -- over as time, clamped to this rule's capacity; nothing is
        -- forgiven beyond what the new bucket holds.
        local us = dt
        if frac > 0 then us = us + 1 end
        local full_us = cdiv(capacity, scale)
        if us > full_us then us = full_us end
        ahead = math.min(us * scale, capacity)
      end
    end
  end
  if broken then
    corrupt = corrupt + 1
    ahead = capacity
  end
  state[i] = { scale = scale, interval = interval, burst = burst, capacity = capacity,
    ahead = ahead, broken = broken }
end

local allowed = 1
local retry = 0
for i = 1, rules do
  local r = state[i]
  r.needed = r.ahead + n * r.interval
  if r.needed > r.capacity then
    allowed = 0
    local wait = cdiv(r.needed - r.capacity, r.scale)
    if wait > retry then retry = wait end
  end
end

local binding, remaining, reset, found = 0, MAX, 0, false
for i = 1, rules do
  local r = state[i]
  local ahead = r.ahead
  if allowed == 1 then ahead = r.needed end
  if (allowed == 1 and n > 0) or r.broken then
    -- tat = now * scale + ahead, split so that now is never scaled.
    local whole = idiv(ahead, r.scale)
    local value = 'g1:' .. fmt(now + whole) .. ':' .. fmt(ahead - whole * r.scale) .. ':'
      .. fmt(r.scale) .. ':' .. fmt(r.interval) .. ':' .. fmt(r.burst)
    local ttl = cdiv(cdiv(ahead, r.scale), 1000)
    if ttl < 1 then ttl = 1 end
    ttl = ttl + linger
    if r.broken then redis.call('DEL', KEYS[i]) end
    redis.call('SET', KEYS[i], value, 'PX', fmt(ttl))
  end
  local left = 0
  if ahead < r.capacity then left = idiv(r.capacity - ahead, r.interval) end
  local until_full = cdiv(ahead, r.scale)
  if allowed == 1 then
    -- binding: the rule with the fewest tokens left
    if left < remaining then binding, remaining, reset = i - 1, left, until_full end
  else
    -- binding: the (first) rule with the longest wait
    if left < remaining then remaining = left end
    if not found and r.needed > r.capacity and cdiv(r.needed - r.capacity, r.scale) == retry then
      binding, reset, found = i - 1, until_full, true
    end
  end
end
return { allowed, retry, remaining, reset, binding, corrupt }
