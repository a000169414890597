#!lua
-- A VM is gone from the provider (destroyed, or vanished): take it out of every set of its pool (and of
-- its token's held set, see checkout.lua) and keep its hash for data_ttl seconds as history.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] destroy stamp ("" = leave unset)  ARGV[5] ttl secs
-- ARGV[6] optional: a state ("pending") the VM must still be in, or nothing is done. A failed clone is
--         forgotten this way: its VM may already have passed its checks, become ready and been checked
--         out, and a VM in a client's hands is never taken away.
-- ARGV[7] optional: an entry for the VM's history (history.lua, put in front of this file), written when
--         the VM did leave a set. The history expires with the hash.
--
-- Returns the number of sets it was removed from; -1 when the VM was not in the ARGV[6] state.
local prefix, pool, host, stamp, ttl, only = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local entry = ARGV[7]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end
if only and only ~= '' and redis.call('SISMEMBER', key(only, pool), host) == 0 then return -1 end
local removed = 0
for _, state in ipairs({'pending', 'ready', 'running', 'completed', 'discovered'}) do
  removed = removed + redis.call('SREM', key(state, pool), host)
end
if removed > 0 and entry and entry ~= '' then history(prefix, host, entry) end
redis.call('EXPIRE', history_key(prefix, host), ttl)
redis.call('HDEL', key('active', pool), host)
local vm = key('vm', host)
local exists = redis.call('EXISTS', vm) == 1
if exists then
  local owner = redis.call('HGET', vm, 'token:token')
  if owner and owner ~= '' then redis.call('SREM', key('held', owner), host) end
end
-- A destroy is always recorded, as the original does, even for a VM whose hash is gone (one discovered
-- in the folder after Redis lost its record): no VM leaves the provider without a trace in Redis.
if stamp ~= '' then
  redis.call('HSET', vm, 'destroy', stamp)
  exists = true
end
if exists then redis.call('EXPIRE', vm, ttl) end
return removed
