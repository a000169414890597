#!lua
-- Move one VM between two of its pool's state sets, and stamp its hash, in one atomic step.
-- Used by the manager for every lifecycle transition (pending -> ready, ready -> completed, ...).
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] from state  ARGV[5] to state
-- ARGV[6] an entry for the VM's history (history.lua, put in front of this file; "" = none)
-- ARGV[7..] field, value pairs to set on the VM hash
--
-- A VM with a token (`token:token`) leaving `running` leaves the token's held set (checkout.lua's
-- per-token cap counts it), and one entering `running` joins it.
--
-- Returns 1 when moved, 0 when the VM was not in the `from` set (someone else moved it first).
local prefix, pool, host, from, to = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end

if redis.call('SMOVE', key(from, pool), key(to, pool), host) == 0 then return 0 end
if from == 'running' then redis.call('HDEL', key('active', pool), host) end
local vm = key('vm', host)
if #ARGV >= 8 then
  for f = 7, #ARGV - 1, 2 do redis.call('HSET', vm, ARGV[f], ARGV[f + 1]) end
end
if ARGV[6] and ARGV[6] ~= '' then history(prefix, host, ARGV[6]) end
if from ~= to and (from == 'running' or to == 'running') then
  local owner = redis.call('HGET', vm, 'token:token')
  if owner and owner ~= '' then
    redis.call(from == 'running' and 'SREM' or 'SADD', key('held', owner), host)
  end
end
return 1
