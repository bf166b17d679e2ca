-- fusebox GCRA: one decision over several rules of one key, atomically.
--
-- KEYS[i]   the state key of rule i (all under one {hash tag})
-- ARGV[1]   n, the most tokens to take (0 <= n)
-- ARGV[2]   m, the fewest (0 <= m <= n). m = n: exactly n tokens or none
--           (a decision). m < n (a lease): as many as every rule holds,
--           at most n, if that is at least m; refused otherwise, with the
--           wait for m tokens.
-- ARGV[3]   R, the number of rules (= #KEYS)
-- ARGV[3 + i]  rule i as "<scale>:<interval>:<burst>" (decimal digits):
--           the rule's emission interval is `interval / scale`
--           microseconds (scaled units of 1/scale us, exactly as the
--           core's `gcra` kernel). The client formats it once per rule.
-- ARGV[4 + R]  optional: "now" in microseconds, for deterministic tests
--           only; production never sends it and uses Redis TIME. Expiry
--           runs on Redis's real clock, so under a given "now" every key
--           lives one day longer than its refill time (it must not vanish
--           while the test's clock stands still).
--
-- State per rule key: "g1:<tat_us>:<frac>:<scale>:<interval>:<burst>",
-- the theoretical arrival time tat = tat_us * scale + frac scaled units
-- (0 <= frac < scale), written with PX = time until the bucket is full.
-- (The layout of every earlier version of this script: instances of
-- either version share state during a rolling upgrade.) The fast path
-- matches the value against the rule's own "<scale>:<interval>:<burst>"
-- text; any other value takes the full parse below.
--
-- Another quota's state (the quota changed, or two quotas share the
-- name) is read as absolute time, clamped to this rule's bucket, and
-- written back under this rule even on a refusal, so that a raised quota
-- is not refused for the rest of the old one's drain. What the clamp cut
-- off is kept as a hold, ":h<hold_us>" after the burst (the key then lives
-- until the hold passes): any other quota reads the later of tat and the
-- hold, so a quota never gains from another's clamp (without it, two
-- quotas alternating on one key forgave each other's drain and admitted
-- without bound at one instant). The rule that wrote the hold ignores it.
-- An instance of an earlier version reads a value with a hold as corrupt
-- (a drained bucket: it refuses, never forgives).
--
-- Arithmetic: Lua numbers are doubles; every value kept or computed here
-- is an integer below 2^53 (the caller keeps capacity = interval * burst
-- at most 2^52 scaled units and burst * T at most 2^47 us, Redis TIME in
-- microseconds is ~2^50.6), and absolute times stay below 2^53: now +
-- burst * T (in us) < 2^53, i.e. until the year 2250 (2255 less the
-- longest refill time allowed, 2^47 us = 4.46 years); past that the
-- script refuses with an error rather than guess. Absolute time is never
-- multiplied by the scale: only the distance tat - now is, after a range
-- check. Divisions are corrected to exact integer floors. Numbers are
-- written with string.format('%d'), exact for integers below 2^53 (Lua
-- 5.1's tostring is not: it prints 14 significant digits).
--
-- Reply: { allowed (0/1), retry_after_us, remaining, reset_us, rule (0-based
-- index of the binding rule), corrupt (how many keys held a bad value),
-- taken (tokens taken: n, or fewer for a lease; 0 when refused) }.
-- A corrupt value (wrong type, unparseable, out of range) is replaced by a
-- drained bucket: the request is denied and the rule refills from empty.
--
-- Cost: one TIME, one GET and at most one SET per rule; no table per
-- rule, one string.format per write.

local MAX = 9007199254740991 -- 2^53 - 1
local SKEW_US = 60000000     -- a Redis clock going back this far still only denies
local MAX_DRAIN_US = 140737488355328 -- 2^47 us: the longest burst * T the caller sends
local match = string.match

-- floor(a / b) for integers 0 <= a < 2^53, 0 < b, exactly: the remainder
-- of the double division corrected into [0, b), the quotient then exact.
local function idiv(a, b)
  local r = a % b
  if r < 0 then r = r + b elseif r >= b then r = r - b end
  return (a - r) / b
end

-- A count from the caller: an integer in [0, 2^53), or nil.
local function int(s)
  local v = tonumber(s)
  if v == nil or v ~= v or v < 0 or v > MAX or v % 1 ~= 0 then return nil end
  return v
end

local rules = #KEYS
local n, m = int(ARGV[1]), int(ARGV[2])
if n == nil or m == nil or m > n or rules < 1 or #ARGV < 2 + rules or #ARGV > 3 + rules then
  return redis.error_reply('ERR fusebox gcra: bad n, m or rule count')
end
local now
local linger = 0
local at = ARGV[3 + rules]
if at ~= nil then
  linger = 86400000
  now = int(at)
  if now == nil then return redis.error_reply('ERR fusebox gcra: bad now') end
else
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end

-- Per rule: { scale, interval, capacity, ahead, broken (0/1), spec, rewrite (0/1),
-- hold (0: none) }.
local st = {}
local corrupt = 0
for i = 1, rules do
  local spec = ARGV[2 + i]
  local s1, s2, s3 = match(spec, '^(%d+):(%d+):(%d+)$')
  if s1 == nil then return redis.error_reply('ERR fusebox gcra: bad rule ' .. i) end
  local scale, interval, burst = s1 + 0, s2 + 0, s3 + 0 -- digits only: integers
  local capacity = interval * burst
  if scale < 1 or scale > 65536 or interval < 1 or burst < 1
     or capacity > 4503599627370496 then
    return redis.error_reply('ERR fusebox gcra: bad rule ' .. i)
  end
  local full_us = idiv(capacity + scale - 1, scale)
  if full_us > MAX_DRAIN_US then return redis.error_reply('ERR fusebox gcra: bad rule ' .. i) end
  if now + full_us + SKEW_US > MAX then
    return redis.error_reply('ERR fusebox gcra: time out of range for rule ' .. i)
  end
  local ahead = 0
  local broken = 0
  local rewrite = 0 -- 1: the state is written back even on a refusal
  local hold = 0    -- a time no other quota may read as past (see the header)
  local raw = redis.pcall('GET', KEYS[i])
  if type(raw) == 'table' then
    broken = 1 -- wrong type (or any other error reading it)
  elseif raw then
    -- The same quota and no hold (the common case): only tat and frac to
    -- read.
    local a, b = match(raw, '^g1:(%d+):(%d+):' .. spec .. '$')
    local own, tat, frac = true, nil, nil
    if a then
      tat, frac = a + 0, b + 0
      if tat > MAX or frac >= scale then broken = 1 end
    else
      local c, d, e, f, g = match(raw, '^g1:(%d+):(%d+):(%d+):(%d+):(%d+)$')
      local h = nil
      if c == nil then
        c, d, e, f, g, h = match(raw, '^g1:(%d+):(%d+):(%d+):(%d+):(%d+):h(%d+)$')
      end
      tat, frac = int(c), int(d)
      local s, iv, bu = int(e), int(f), int(g)
      if h ~= nil then hold = int(h) end
      if tat == nil or frac == nil or s == nil or iv == nil or bu == nil or hold == nil
         or s < 1 or s > 65536 or iv < 1 or bu < 1 or iv * bu > 4503599627370496
         or frac >= s or hold > now + MAX_DRAIN_US + SKEW_US then
        -- (Its rule held to what a rule sent here must be, as above: no
        -- instance writes a burst of zero or a capacity past 2^52.)
        broken = 1
      else
        -- the same quota, written another way (or with a hold)
        own = s == scale and iv == interval and bu == burst
      end
    end
    if broken == 1 then
      hold = 0
    elseif own then
      -- A hold is another quota's: this one reads its own time.
      if tat >= now then
        local dt = tat - now
        if dt <= idiv(capacity, scale) + SKEW_US then
          ahead = dt * scale + frac -- exact, as the core
        else
          -- Further ahead than this rule ever drains (plus the skew): a
          -- forged value, or a Redis clock gone back further than the
          -- skew allowed. Counted and replaced by a bucket drained from
          -- now, which refills in the rule's time; left in place, it
          -- would refuse the key until the clock caught up (years).
          broken = 1
          hold = 0
        end
      end
    else
      -- Another quota's state (the quota changed, or two quotas share
      -- the name): its time, or the hold it carries if that is later,
      -- read as absolute time.
      local us = tat
      if frac > 0 then us = us + 1 end
      if hold > us then us = hold end
      if us >= now then
        local dt = us - now
        if dt > MAX_DRAIN_US + SKEW_US then
          broken = 1 -- no rule drains longer than 2^47 us (4.46 years)
          hold = 0
        else
          if dt > full_us then
            -- Longer than this rule's bucket: clamped to it (nothing is
            -- forgiven beyond what the new bucket holds), and the time
            -- kept as a hold, so that the quota that drained it still
            -- reads it (no quota gains from another's clamp).
            hold = us
            dt = full_us
          end
          ahead = dt * scale
          if ahead > capacity then ahead = capacity end
          -- Written back under this rule, refused or not: left as it was,
          -- the old drain (an hour, for a raised per-hour quota) would be
          -- read again on every request and refuse the key until it ran
          -- out, however fast this rule refills.
          rewrite = 1
        end
      end
    end
  end
  if broken == 1 then
    corrupt = corrupt + 1
    ahead = capacity
  end
  if hold <= now then hold = 0 end
  st[i] = { scale, interval, capacity, ahead, broken, spec, rewrite, hold }
end

if m < n then
  -- A lease: as many as every rule holds, at most n.
  local take = n
  for i = 1, rules do
    local r = st[i]
    local capacity, ahead = r[3], r[4]
    local left = 0
    if ahead < capacity then left = idiv(capacity - ahead, r[2]) end
    if left < take then take = left end
  end
  if take >= m then n = take else n = m end
end

-- A peek (n = 0) takes nothing and is always admitted, even when a
-- stored time runs ahead of the rule's drain (a clock stepped back).
local allowed = 1
local retry = 0
for i = 1, rules do
  local r = st[i]
  local scale, capacity = r[1], r[3]
  local needed = r[4] + n * r[2]
  if n > 0 and needed > capacity then
    allowed = 0
    local wait = idiv(needed - capacity + scale - 1, scale)
    if wait > retry then retry = wait end
  end
end

local binding, remaining, reset, found = 0, MAX, 0, false
for i = 1, rules do
  local r = st[i]
  local scale, interval, capacity, ahead = r[1], r[2], r[3], r[4]
  local needed = ahead + n * interval
  if allowed == 1 then ahead = needed end
  local until_full = idiv(ahead + scale - 1, scale)
  if (allowed == 1 and n > 0) or r[5] == 1 or r[7] == 1 then
    -- tat = now * scale + ahead, split so that now is never scaled.
    local whole = idiv(ahead, scale)
    local tat, hold = now + whole, r[8]
    local value
    local live = until_full
    if hold > tat then
      -- The hold outlives this rule's drain: kept, and the key with it.
      value = string.format('g1:%d:%d:%s:h%d', tat, ahead - whole * scale, r[6], hold)
      live = hold - now
    else
      value = string.format('g1:%d:%d:%s', tat, ahead - whole * scale, r[6])
    end
    local ttl = idiv(live + 999, 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], value, 'PX', ttl + linger)
  end
  local left = 0
  if ahead < capacity then left = idiv(capacity - ahead, interval) end
  if allowed == 1 then
    -- binding: the rule with the fewest tokens left
    if left < remaining then binding, remaining, reset = i - 1, left, until_full end
  else
    -- binding: the (first) rule with the longest wait
    if left < remaining then remaining = left end
    if not found and needed > capacity and idiv(needed - capacity + scale - 1, scale) == retry then
      binding, reset, found = i - 1, until_full, true
    end
  end
end
if allowed == 0 then n = 0 end
return { allowed, retry, remaining, reset, binding, corrupt, n }
