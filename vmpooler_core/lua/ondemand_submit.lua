#!lua
-- A new on-demand request (POST /api/v3/ondemandvm), in one atomic step: its hash and its place in the
-- queue of new requests, which a manager takes in (ondemand_sweep.lua). See ondemand.lua for the keys.
--
-- ARGV[1] prefix  ARGV[2] request id  ARGV[3] submit epoch (whole seconds)
-- ARGV[4] requested ("<alias>:<pool>:<count>,...")  ARGV[5] token ("" = none)  ARGV[6] the token's user
-- ARGV[7] the most VMs a token may hold at once ("" = no cap)
-- ARGV[8] optional: the width (seconds) of demand.lua's buckets, then pool, count pairs: the VMs asked
--         of each pool, counted as its demand
--
-- With a cap, the VMs the token holds (held_sets.lua) and those its open requests have still to deliver
-- count as held: a request that would take it over the cap is refused. O(open requests).
--
-- Returns 1; 0 when a request of that id exists already (nothing done); {"toomany", held, cap} (nothing
-- done).
local prefix, id, now, requested, token, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cap = tonumber(ARGV[7] or '')
local request = od_request_key(prefix, id)
if redis.call('EXISTS', request) == 1 then return 0 end
if cap and token ~= '' then
  local asked, pools = 0, {}
  for _, t in ipairs(od_triples(requested)) do asked, pools[#pools + 1] = asked + t[3], t[2] end
  local owed = 0
  for _, queue in ipairs({OD_NEW, OD_PROCESSING}) do
    for _, other in ipairs(redis.call('ZRANGE', prefix .. queue, 0, -1)) do
      local f = redis.call('HMGET', od_request_key(prefix, other), 'token:token', 'requested', 'status')
      if f[1] == token and not (f[3] and f[3] ~= '') then
        for _, t in ipairs(od_triples(f[2])) do
          owed = owed + math.max(0, t[3] - redis.call('SCARD', od_vms_key(prefix, other, t[1], t[2])))
        end
      end
    end
  end
  local held = held_count(prefix, token, cap - asked - owed, pools) + owed
  if held + asked > cap then return {'toomany', held, cap} end
end
redis.call('HSET', request, 'requested', requested)
if token ~= '' then redis.call('HSET', request, 'token:token', token, 'token:user', user) end
redis.call('ZADD', prefix .. OD_NEW, now, id)
local width = tonumber(ARGV[8] or '')
if width then
  for a = 9, #ARGV - 1, 2 do count_demand(prefix, ARGV[a], width, 0, 0, tonumber(ARGV[a + 1])) end
end
return 1
