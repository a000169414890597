#!lua
-- A new on-demand request (POST /api/v3/ondemandvm), in one atomic step: its hash and its place in the
-- queue of new requests, which a manager takes in (ondemand_sweep.lua). See ondemand.lua for the keys.
--
-- ARGV[1] prefix  ARGV[2] request id  ARGV[3] submit epoch (whole seconds)
-- ARGV[4] requested ("<alias>:<pool>:<count>,...")  ARGV[5] token ("" = none)  ARGV[6] the token's user
-- ARGV[7] optional: the width (seconds) of demand.lua's buckets, then pool, count pairs: the VMs asked
--         of each pool, counted as its demand
--
-- Returns 1; 0 when a request of that id exists already (nothing done).
local prefix, id, now, requested, token, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local request = od_request_key(prefix, id)
if redis.call('EXISTS', request) == 1 then return 0 end
redis.call('HSET', request, 'requested', requested)
if token ~= '' then redis.call('HSET', request, 'token:token', token, 'token:user', user) end
redis.call('ZADD', prefix .. OD_NEW, now, id)
local width = tonumber(ARGV[7] or '')
if width then
  for a = 8, #ARGV - 1, 2 do count_demand(prefix, ARGV[a], width, 0, 0, tonumber(ARGV[a + 1])) end
end
return 1
