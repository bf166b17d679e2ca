-- fusebox fleet circuit breaker: the shared decision, changed atomically.
--
-- KEYS[1]  decision   <prefix>:{breaker:<name>}:decision, a string
--                     "fb1:<version>:<state>:<open_until_us>:<streak>",
--                     state c (closed), o (open), h (half-open),
--                     f (forced open); open_until_us (Redis TIME) only
--                     for o, 0 otherwise; streak 0..15 (0 for c and f).
-- KEYS[2]  verdicts   <prefix>:{breaker:<name>}:verdicts, a zset of
--                     instance -> trip time (quorum mode; a member
--                     stamped in the future is forged: removed, counted)
-- KEYS[3]  successes  <prefix>:{breaker:<name>}:trial:ok, '<version>:<n>' or
--                     '<version>:<n>:<tokens>': successful trials of the
--                     half-open decision <version>, and the tokens of those
--                     counted, one a line (a close sent again with one,
--                     after its connection closed, is not counted twice,
--                     whatever closes ran in between; only a token
--                     holding a line break, from an instance id holding
--                     one, could be taken for two tokens counted). The version before kept only the last
--                     token: during an upgrade from it, its instances
--                     find a token of theirs only if it came last, as
--                     they always did, and keep only their own.
-- KEYS[4..] trial, release: the trial slots <prefix>:{breaker:<name>}:trial:<i>,
--                     '<version>:ttl<ms>:<token>', set with PX <ms> (the
--                     TTL the slot claims; '<version>:<token>' in the
--                     version before: read as claiming the caller's own)
-- KEYS[4]  trip, force_open, force_close: the record of the calling
--                     process, <prefix>:{breaker:<name>}:record:<nonce>,
--                     holding the token (ARGV[12], a number growing per
--                     process, from one counter for its trips and admin
--                     commands) of the last of them it ran, the token the
--                     same each time one command is sent: a trip sent
--                     again after its reply was lost, or an admin command
--                     sent again (its connection closed after Redis ran
--                     it), or an older command of either kind, changes
--                     nothing, whatever was decided in between. One key
--                     per process, kept a day after its last command (one
--                     key per trip, each kept a day, piled up ~86 400 a
--                     day for a 1 s open time that kept failing; a key per
--                     kind let a trip run late reopen the fleet its
--                     process's newer force_close had closed; found by
--                     hostile reviews, as a force_close run again undoing
--                     another instance's trip made between its two runs)
--
-- ARGV[1] op: sync | trip | close | force_open | force_close | trial | release
-- ARGV[2] the version the caller knows (its newest merged decision)
-- ARGV[3] open_for_us   ARGV[4] max_open_for_us (open time = min(open_for *
--         2^streak, max_open_for); a stored deadline further away than
--         the longest open time of any configuration, LONGEST, is forged:
--         cut to the caller's max_open_for)
-- ARGV[5..7] the fleet decision as the caller holds it (c|o|h|f; its
--         local state if that came from the fleet, else c), open remaining
--         µs, streak: written when the stored decision is missing, corrupt
--         or older than the caller's known version (the store lost data)
-- ARGV[8] op argument: trip: quorum min instances (0 = off);
--         close: the half-open version a trial succeeded in; trial: slot TTL ms;
--         release: unused
-- ARGV[9] trip: quorum window ms; close: successes needed fleet-wide
--         (close_after); trial/release: token (a slot holds
--         '<version>:<token>'; release matches the token)
-- ARGV[10] trip: instance id; close: the trial's token (empty: none)
-- ARGV[11] s: SPUBLISH (a Cluster's sharded pub/sub), else PUBLISH
-- ARGV[12] trip, force_open, force_close: the command's token, a decimal
--         number, written to its record KEYS[4] (empty, or no KEYS[4]: no
--         record)
--
-- Reply: {version, state (0 c, 1 o, 2 h, 3 f), open_until_us, streak,
--         now_us, flags}; flags: 1 corrupt value replaced, 2 trial granted,
--         4 store repopulated from the caller, 8 decision changed,
--         16 version space exhausted (a change past LIMIT not written).
local key = KEYS[1]
local op = ARGV[1]
local known = tonumber(ARGV[2]) or 0
local open_for = tonumber(ARGV[3]) or 1000000
local max_open = tonumber(ARGV[4]) or open_for
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local LIMIT = 9007199254740000
local JUMP = 4294967296
local SKEW = 60000000 -- µs: a Redis clock stepping back this far forges nothing
-- µs: the longest open time of any configuration (the core's
-- Config::MAX_OPEN_FOR, 2^24 ticks of 1.024 ms), plus SKEW: an opening
-- stored further away than this from Redis TIME is forged.
local LONGEST = 17179869184 + SKEW
-- ms: the longest trial slot TTL (and record TTL) the script sets.
local DAY = 86400000
local flags = 0

local function open_time(streak)
  local d = open_for
  for _ = 1, streak do
    d = d * 2
    if d >= max_open then return max_open end
  end
  if d > max_open then return max_open end
  return d
end

-- A GET that survives a key of another type (written by a careless or
-- hostile hand): the key is deleted and read as missing, and the reply
-- says a corrupt value was replaced, so no instance is stuck on an error.
-- A value longer than `max` bytes, a size no instance writes, is treated
-- so too: a megabyte written by hand is read once, then gone (kept, it
-- was copied into the script at every call and, as a success count's
-- tokens, written back grown at every close). (STRLEN would spare that
-- one read, but is not in the documented ACL.)
local wrong = false
local function get(k, max)
  local r = redis.pcall('GET', k)
  if (type(r) == 'table' and r.err) or (type(r) == 'string' and #r > max) then
    redis.call('DEL', k)
    wrong = true
    return false
  end
  return r
end
-- The longest values instances write: a decision; a record (a token,
-- one decimal number); a trial slot (a version, a TTL, a token: an
-- instance id of at most 128 bytes, a nonce, a sequence number); the
-- successes of one half-open decision (a count and at most 255 tokens,
-- close_after's largest value).
local MAX_DECISION, MAX_RECORD, MAX_SLOT, MAX_SUCCESSES = 64, 32, 512, 65536

-- Parse and validate the stored decision field by field.
local v, s, untl, streak
local changed = false
-- No version past LIMIT is written: the script itself takes one for
-- forged (Lua numbers are doubles, exact to 2^53; at 2^53, v + 1 == v).
-- There the fleet's version space is exhausted (only a hand writing
-- versions 2^32 ahead again and again, each adopted, gets there): the
-- decision stays as stored, and the reply to every call made with the
-- stored version at LIMIT says so (flag 16), a command's record
-- unwritten (it did not run); instances
-- then decide on local state alone until an operator deletes the
-- decision key and restarts them (their merged versions stay).
local exhausted = false
local function store(nv, ns, nu, nk)
  if nv > LIMIT then
    exhausted = true
    return
  end
  v, s, untl, streak = nv, ns, nu, nk
  redis.call('SET', key, string.format('fb1:%.0f:%s:%.0f:%d', v, s, untl, streak))
  changed = true
end
local raw = get(key, MAX_DECISION)
local valid = false
if raw and type(raw) == 'string' and #raw <= 64 then
  local a, b, c, d = string.match(raw, '^fb1:(%d+):([cohf]):(%d+):(%d+)$')
  a, c, d = tonumber(a), tonumber(c), tonumber(d)
  -- A version more than 2^32 past the caller's is forged (no history
  -- makes that many changes unseen): honest versions stay far below LIMIT.
  if a and c and d and a <= LIMIT and a <= known + JUMP and c <= LIMIT and d <= 15 then
    if (b == 'c' or b == 'f') and c == 0 and d == 0 then valid = true
    elseif b == 'h' and c == 0 then valid = true
    elseif b == 'o' then valid = true end
  end
  if valid then
    v, s, untl, streak = a, b, c, d
    if s == 'o' and untl > now + LONGEST then
      -- A forged far-future deadline: bounded by the maximum open time.
      -- One within the longest open time any instance can be configured
      -- with is honoured, whoever's it is: instances configured with a
      -- longer open time (a configuration rolled out one instance at a
      -- time) write longer openings, and each instance's merge caps its
      -- own local open time anyway (the fleet's trial slots stay shut
      -- until the stored opening ends). Cut at the caller's maximum, they
      -- were counted corrupt and shortened for the whole fleet (found by
      -- a hostile review).
      wrong = true
      store(v + 1, 'o', now + max_open, streak)
    end
  end
end
local ls = ARGV[5]
-- Lost: missing, corrupt, rolled back, or rebuilt closed (below) by an
-- instance that had not seen this caller's open decision. A stored version
-- more than 2^32 below the caller's is no rollback: the caller's is the
-- forged one (one it took as honest, being within 2^32 of its own, and
-- another instance replaced as forged); written back, the two would
-- replace each other's at every call.
local rolled_back = valid and v < known and known - v <= JUMP
if not valid or rolled_back or (v == known and s == 'c' and (ls == 'o' or ls == 'f')) then
  if raw and not valid then wrong = true end
  -- The caller's state repopulates it: an open one as a newer version (every
  -- instance adopts it), a closed one at the known version only (so it never
  -- closes an instance that saw an open decision of that version), a
  -- half-open one at the known version too: the decision the caller holds
  -- (half-open, or open with its time up, which every instance holding it
  -- reads as the same), so a trial granted in it still closes it, and its
  -- trial slots, if they survived (a corrupt value), still count.
  local lr = tonumber(ARGV[6]) or 0
  local lk = tonumber(ARGV[7]) or 0
  if lk < 0 or lk > 15 then lk = 0 end
  local base = known
  if valid and v > base then base = v end
  -- A valid decision below the caller's version was made since the store
  -- lost its data, by instances that never saw the caller's (a fresh
  -- one numbers from 0). One that holds the breaker more firmly than the
  -- caller (forced > open > half-open > closed) is kept, renumbered past
  -- the caller's version so that every instance adopts it: a closed
  -- caller never closes the fleet over a trip made since.
  local rank = {c = 0, h = 1, o = 2, f = 3}
  if valid and v < known and rank[s] > (rank[ls] or 0) then
    store(base + 1, s, untl, streak)
  elseif ls == 'o' then
    if lr > open_time(lk) then lr = open_time(lk) end
    store(base + 1, 'o', now + lr, lk)
  elseif ls == 'f' then store(base + 1, 'f', 0, 0)
  elseif ls == 'h' then store(base, 'h', 0, lk)
  elseif op == 'close' and tonumber(ARGV[8]) == known then
    -- A trial of the decision the caller holds (half-open, or open with
    -- its time up) succeeded and closed it locally: that decision is
    -- written back, so the close below applies for the whole fleet
    -- (written closed at that version, the instances still holding it
    -- half-open would take it for a value rewritten by hand, and stay).
    store(base, 'h', 0, lk)
  else store(base, 'c', 0, 0) end
  flags = flags + 4
end

local function expired() return s == 'o' and untl <= now end

-- A trip or admin command's record (KEYS[4]) holds the token of the last
-- one the calling process had run, a number that only grows in a process:
-- a token not above it is that command sent again, or an older one
-- arriving late (sent on a connection given up for a newer one, while
-- Redis stalled): either way run already or replaced by a newer command,
-- so it changes nothing. A process sends its next command only once the
-- one before was answered or given up for good, so one key per process
-- suffices. A record that is no number (written by
-- hand) is corrupt: replaced. One holding a huge number makes the
-- process's commands of that kind read as repeats until it expires (a
-- day at most; they then protect that instance alone): no worse than a
-- decision written by hand. The script writes a record for a day: one
-- that never expires, or outlives a day, was written by another hand and
-- is forged too (replaced, as a forged trial slot is taken over; found
-- by a hostile review: a number written by hand with no expiry made the
-- process's trips and admin commands repeats for as long as it ran).
local sent = tonumber(string.match(ARGV[12] or '', '^%d+$') or '')
local recorded = false
local write_record = false
if (op == 'trip' or op == 'force_open' or op == 'force_close') and KEYS[4] and sent then
  local rec = get(KEYS[4], MAX_RECORD)
  local last = nil
  if rec then last = tonumber(string.match(rec, '^%d+$') or '') end
  if rec and not last then wrong = true end
  if last and sent <= last then
    local left = redis.call('PTTL', KEYS[4])
    if left < 0 or left > DAY then
      last = nil
      wrong = true
    end
  end
  recorded = last ~= nil and sent <= last
  -- Written at the end, once the command ran (not with the version
  -- space exhausted: the command, not run, is sent again).
  write_record = not recorded
end

if op == 'trip' and recorded then
  -- A trip taken already, sent again because its reply was lost: the
  -- fleet may have served its open time and closed since (reopened by
  -- it, the fleet would stay open twice for one trip), and its quorum
  -- verdict was counted (stamped anew, it would stay in the window longer).
elseif op == 'trip' then
  local quorum = tonumber(ARGV[8]) or 0
  local go = true
  if quorum > 0 and s == 'c' then
    local window = (tonumber(ARGV[9]) or 10000) * 1000
    if type(redis.pcall('ZADD', KEYS[2], now, ARGV[10])) == 'table' then
      -- Not a sorted set: replaced by one.
      redis.call('DEL', KEYS[2])
      redis.call('ZADD', KEYS[2], now, ARGV[10])
      wrong = true
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
    -- Every verdict is stamped with TIME here: one later than now (by
    -- more than a Redis clock stepping back explains) is forged, and
    -- would count toward every quorum until its key expired.
    if redis.call('ZREMRANGEBYSCORE', KEYS[2], string.format('(%.0f', now + SKEW), '+inf') > 0 then
      wrong = true
    end
    redis.call('PEXPIRE', KEYS[2], math.floor(window / 1000) + 1)
    go = redis.call('ZCARD', KEYS[2]) >= quorum
  end
  if go then
    if s == 'c' then
      store(v + 1, 'o', now + open_time(0), 0)
      if quorum > 0 then redis.call('DEL', KEYS[2]) end
    elseif (s == 'h' or expired()) and v <= known then
      -- A trial failed (or the open time ran out) in a decision the
      -- caller holds. One it has not seen is no trial of its: the repeat
      -- of a trip whose reply was lost (the decision it made since ran
      -- out), or a trip made before the caller saw the fleet open;
      -- reopened by it, the fleet would stay open twice as long for
      -- one trip.
      local k = streak + 1
      if k > 15 then k = 15 end
      store(v + 1, 'o', now + open_time(k), k)
    end
  end
elseif op == 'close' then
  if (s == 'h' or expired()) and v == tonumber(ARGV[8]) then
    local need = tonumber(ARGV[9]) or 1
    local n = 1
    local token = ARGV[10] or ''
    local again = false
    if need > 1 then
      local raw_ok = get(KEYS[3], MAX_SUCCESSES) or ''
      local pv, pc = string.match(raw_ok, '^(%d+):(%d+)$')
      local pt = nil
      if pv == nil then pv, pc, pt = string.match(raw_ok, '^(%d+):(%d+):(.+)$') end
      if pv and tonumber(pv) == v and tonumber(pc) then
        -- Every token counted in this version is kept, one a line: a
        -- close sent again after another trial's close ran in between
        -- (its connection closed after Redis ran it) is found too
        -- (found by a hostile review: with only the last token kept, it
        -- counted twice, and close_after 3 closed on two successes).
        if #token > 0 and pt and string.find('\n' .. pt .. '\n', '\n' .. token .. '\n', 1, true) then
          again = true -- this trial's success, counted already
        elseif tonumber(pc) < need then n = tonumber(pc) + 1 else wrong = true end
      end
      if not again then
        local value = string.format('%.0f:%d', v, n)
        local counted = token
        if n > 1 and pt then
          counted = pt
          if #token > 0 then counted = pt .. '\n' .. token end
        end
        if #counted > 0 then value = value .. ':' .. counted end
        redis.call('SET', KEYS[3], value, 'PX', 3600000)
      end
    end
    if not again and n >= need then store(v + 1, 'c', 0, 0) end
  end
elseif (op == 'force_open' or op == 'force_close') and recorded then
  -- Run already, sent again on a new connection: a trip, a close or
  -- another operator's command made since is newer, and stays.
elseif op == 'force_open' then
  store(v + 1, 'f', 0, 0)
elseif op == 'force_close' then
  store(v + 1, 'c', 0, 0)
elseif op == 'trial' then
  if s == 'c' then
    flags = flags + 2
  else
    if expired() then store(v + 1, 'h', 0, streak) end
    if s == 'h' then
      local prefix = string.format('%.0f:', v)
      local ttl = tonumber(ARGV[8]) or 10000
      if ttl < 1 then ttl = 1 elseif ttl > DAY then ttl = DAY end
      local suffix = ':' .. ARGV[9]
      -- A request sent again (its connection closed after Redis ran it)
      -- finds the slot it took: granted it again, and no other (found by
      -- a hostile review: with every slot taken, by itself, it was
      -- refused, and its caller, refused, never gave the slot back; with
      -- one slot no trial could run fleet-wide until the slot's TTL).
      local mine = nil
      if #ARGV[9] > 0 then
        for i = 4, #KEYS do
          local cur = get(KEYS[i], MAX_SLOT)
          if cur and string.sub(cur, 1, #prefix) == prefix and #cur > #suffix
            and string.sub(cur, -#suffix) == suffix then
            mine = i
            break
          end
        end
      end
      if mine then flags = flags + 2 end
      for i = 4, #KEYS do
        if mine then break end
        local cur = get(KEYS[i], MAX_SLOT)
        local free = not cur or string.sub(cur, 1, #prefix) ~= prefix
        if not free then
          -- A slot no trial could have set is forged: taken over (so it
          -- cannot shut the half-open fleet's trials), and counted. A
          -- slot claims the TTL it was set with ('ttl<ms>' after its
          -- version): kept longer than its claim, or a claim over a day
          -- (the longest trial TTL), or no expiry, it is forged. One
          -- with no claim (the format of the version before, or written
          -- by hand) is forged once kept longer than the caller's own
          -- trial TTL. A slot claiming a TTL longer than the caller's
          -- (an instance configured with a longer one) is honoured
          -- until its claim: taken, it would run a trial beyond the
          -- configured permits.
          local left = redis.call('PTTL', KEYS[i])
          local claim = tonumber(string.match(cur, '^%d+:ttl(%d+):') or '')
          local bound = claim or ttl
          if left < 0 or left > bound or bound > DAY then
            free = true
            wrong = true
          end
        end
        if free then
          redis.call('SET', KEYS[i], string.format('%sttl%d', prefix, ttl) .. suffix, 'PX', ttl)
          flags = flags + 2
          break
        end
      end
    end
  end
elseif op == 'release' then
  -- By token alone (unique per process): the caller may not have seen
  -- the grant (cancelled, or its reply timed out).
  local suffix = ':' .. ARGV[9]
  for i = 4, #KEYS do
    local cur = get(KEYS[i], MAX_SLOT)
    if cur and #ARGV[9] > 0 and string.sub(cur, -#suffix) == suffix then
      redis.call('DEL', KEYS[i])
    end
  end
end

-- At the limit, with no change written, every caller is told too.
if v >= LIMIT then exhausted = true end
if write_record and not exhausted then redis.call('SET', KEYS[4], ARGV[12], 'PX', DAY) end
if wrong then flags = flags + 1 end
if exhausted then flags = flags + 16 end
if changed then
  flags = flags + 8
  local publish = 'PUBLISH'
  if ARGV[11] == 's' then publish = 'SPUBLISH' end
  redis.call(publish, (string.gsub(key, ':decision$', ':events')), string.format('%.0f', v))
end
local code = 0
if s == 'o' then code = 1 elseif s == 'h' then code = 2 elseif s == 'f' then code = 3 end
return {v, code, untl, streak, now, flags}
