-- Check out the VMs of one request, all or nothing, in one atomic step.
--
-- Key names are built from the prefix (as keys.py builds them: <prefix>__<kind>__<name>) because the
-- VMs, and so their hash keys, are only known once popped. vmpooler runs on one Redis (or a Sentinel
-- group), never a cluster, so this is safe.
--
-- ARGV[1]  prefix                    ARGV[2]  checkout stamp (time string)
-- ARGV[3]  token ("" = none)         ARGV[4]  lifetime hours for token checkouts ("" = none)
-- ARGV[5]  number of entries, then per entry:
--          requested name, count, number of candidate pools, candidate pools...
--          (the requested pool itself first when it is one, then its alias targets)
--
-- Returns {"ok", requested, pool, host, requested, pool, host, ...}
--      or {"empty", requested}    nothing taken: a pool was short
--      or {"unauthorized"}        nothing taken: the token does not exist
local prefix, now, token, lifetime = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end

local user = nil
if token ~= '' then
  local tkey = key('token', token)
  if redis.call('EXISTS', tkey) == 0 then return {'unauthorized'} end
  user = redis.call('HGET', tkey, 'user')
  redis.call('HSET', tkey, 'last', now)
end

local taken = {}          -- flat list: requested, pool, host
local entries = tonumber(ARGV[5])
local i = 6
local short = nil
for _ = 1, entries do
  local requested, count, ncand = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local first, last = i + 3, i + 2 + ncand
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

if short then
  -- Put back everything this request took; no other client could have seen it gone.
  for t = 1, #taken, 3 do redis.call('SADD', key('ready', taken[t + 1]), taken[t + 2]) end
  return {'empty', short}
end

for t = 1, #taken, 3 do
  local pool, host = taken[t + 1], taken[t + 2]
  redis.call('SADD', key('running', pool), host)
  redis.call('HSET', key('active', pool), host, now)
  local vm = key('vm', host)
  redis.call('HSET', vm, 'checkout', now)
  if user then
    redis.call('HSET', vm, 'token:token', token, 'token:user', user)
    if lifetime ~= '' then redis.call('HSET', vm, 'lifetime', lifetime) end
  end
end
table.insert(taken, 1, 'ok')
return taken
