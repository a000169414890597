#!lua
-- Check out the VMs of one request, all or nothing, in one atomic step.
--
-- Key names are built from the prefix (as keys.py builds them: <prefix>__<kind>__<name>) because the
-- VMs, and so their hash keys, are only known once popped. vmpooler runs on one Redis (or a Sentinel
-- group), never a cluster, so this is safe.
--
-- ARGV[1]  prefix                    ARGV[2]  the request's deadline (deadline.lua; "" = none)
-- ARGV[3]  checkout stamp (time string)
-- ARGV[4]  token ("" = none)         ARGV[5]  lifetime hours for token checkouts ("" = none)
-- ARGV[6]  client (address, or cli:<user>) and ARGV[7] request id, for the VMs' history
-- ARGV[8]  number of entries, then per entry:
--          requested name, count, number of candidate pools, candidate pools...
--          (the requested pool itself first when it is one, then its alias targets)
-- then, each optional (absent or "" = none):
--          the most VMs a token may hold at once; the rate-limit arguments of gcra.lua (7 of them);
--          the width (seconds) of the buckets in which demand.lua counts what each pool is asked for:
--          the VMs taken, or when the request is refused for want of VMs, the VMs each entry asked for
--          (against its first candidate pool)
--
-- A VM checked out with a token is added to the token's held set (<prefix>__held__<token>), which
-- return.lua, move.lua and forget.lua take it out of when it stops running: the cap counts that set,
-- made complete first if it is not known to be (held_sets.lua).
--
-- Each VM checked out is counted in the dashboard's tally, and so is a refusal for want of ready VMs.
--
-- Each VM checked out gets a history entry (history.lua, put in front of this file) naming the token's
-- user ("-" for none), the client and the request.
--
-- Returns {"ok", requested, pool, host, requested, pool, host, ...}, then the token's user when the
--                                  checkout was made with a token
--      or {"empty", requested}    nothing taken: a pool was short
--      or {"unauthorized"}        nothing taken: the token does not exist
--      or {"toomany", held, cap}  nothing taken: the token would hold more than its cap
--      or {"ratelimited", ...}    nothing taken or counted: see gcra.lua
--      or the error LATE ...      nothing taken or counted: Redis ran it after the deadline
local prefix, now, token, lifetime, client, request = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end

local entries = tonumber(ARGV[8])
local wanted, extra = 0, 9  -- VMs asked for; where the optional arguments start
local asked = {}  -- the candidate pools
for _ = 1, entries do
  wanted = wanted + tonumber(ARGV[extra + 1])
  for c = extra + 3, extra + 2 + tonumber(ARGV[extra + 2]) do asked[#asked + 1] = ARGV[c] end
  extra = extra + 3 + tonumber(ARGV[extra + 2])
end
local cap = tonumber(ARGV[extra] or '')
local demand_width = tonumber(ARGV[extra + 8] or '')

-- First, so that every attempt counts, including those with a made-up token.
local limited = rate_limit(prefix, extra + 1)
if limited then return limited end

local user = nil
if token ~= '' then
  local tkey = key('token', token)
  if redis.call('EXISTS', tkey) == 0 then return {'unauthorized'} end
  user = redis.call('HGET', tkey, 'user')
  redis.call('HSET', tkey, 'last', now)
end

local held_key = key('held', token)
if cap and user then
  local held = held_count(prefix, token, cap - wanted, asked)
  if held + wanted > cap then return {'toomany', held, cap} end
end

local taken = {}          -- flat list: requested, pool, host
local i = 9
local short, short_first, short_last = nil, nil, nil
for _ = 1, entries do
  local requested, count, ncand = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + ncand
  short_first, short_last = first, last
  i = last + 1
  for _ = 1, count do
    -- The requested pool itself first; then the alias target with the most ready VMs, which spreads
    -- an alias's load over its pools. SCARD and SPOP are O(1): cost does not grow with pool size.
    local pool, host = nil, nil
    local best, bestn = nil, 0
    for c = first, last do
      local n = redis.call('SCARD', key('ready', ARGV[c]))
      if n > 0 and (c == first and ARGV[c] == requested) then best = ARGV[c]; break end
      if n > bestn then best, bestn = ARGV[c], n end
    end
    if best then
      pool, host = best, redis.call('SPOP', key('ready', best))
    end
    if not host then short = requested; break end
    taken[#taken + 1] = requested
    taken[#taken + 1] = pool
    taken[#taken + 1] = host
  end
  if short then break end
end

-- The dashboard's tally (<prefix>__tally, taken into each pool's next sample by sample.lua): a refusal
-- counts against every pool that could have served the short entry, all of them empty at this instant.
local tally = prefix .. '__tally'
if short then
  -- Put back everything this request took; no other client could have seen it gone.
  for t = 1, #taken, 3 do redis.call('SADD', key('ready', taken[t + 1]), taken[t + 2]) end
  for c = short_first, short_last do redis.call('HINCRBY', tally, 'refused:' .. ARGV[c], 1) end
  if demand_width then
    local e = 9
    for _ = 1, entries do
      count_demand(prefix, ARGV[e + 3], demand_width, 0, tonumber(ARGV[e + 1]), 0)
      e = e + 3 + tonumber(ARGV[e + 2])
    end
  end
  return {'empty', short}
end

local entry = cjson.encode({at = now, event = 'checkout', user = user or '-', client = client,
                            request = request})
for t = 1, #taken, 3 do
  local pool, host = taken[t + 1], taken[t + 2]
  history(prefix, host, entry)
  redis.call('HINCRBY', tally, 'checkout:' .. pool, 1)
  redis.call('SADD', key('running', pool), host)
  redis.call('HSET', key('active', pool), host, now)
  local vm = key('vm', host)
  redis.call('HSET', vm, 'checkout', now)
  if user then
    redis.call('HSET', vm, 'token:token', token, 'token:user', user)
    redis.call('SADD', held_key, host)
    if lifetime ~= '' then redis.call('HSET', vm, 'lifetime', lifetime) end
  end
end
if demand_width then
  local served = {}
  for t = 1, #taken, 3 do served[taken[t + 1]] = (served[taken[t + 1]] or 0) + 1 end
  for pool, n in pairs(served) do count_demand(prefix, pool, demand_width, n, 0, 0) end
end
table.insert(taken, 1, 'ok')
if user then taken[#taken + 1] = user end
return taken
