#!lua
-- Record the VMs of a pool's folder that Redis does not know and that this pooler leaves alone: another
-- pooler's (a mark that is not ours), or unmarked ones without `purge_unconfigured`. The hash
-- `<prefix>__spared__<pool>` (host -> mark, '' for none) remembers them, so that each is reported once,
-- not on every pass.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3..] host, mark pairs: every such VM of this pass's inventory
--
-- A host in one of the pool's sets other than `discovered` (or in its own pool's, see known.lua) is not
-- spared: a record turned up. One in `discovered` leaves it, as it is not ours to destroy (found by a
-- version without marks, or while its mark could not be read). Entries of the hash missing from the list
-- are dropped: gone from the folder, or no longer left alone (ours after all, or purged).
--
-- Returns {{host, mark, ...} newly spared, {host, mark, ...} spared with another mark before,
-- {host, ...} dropped}.
local prefix, pool = ARGV[1], ARGV[2]
local spared = prefix .. '__spared__' .. pool
local states = {'pending', 'ready', 'running', 'completed'}

local listed, new, changed, dropped = {}, {}, {}, {}
for i = 3, #ARGV - 1, 2 do
  local host, mark = ARGV[i], ARGV[i + 1]
  if not known(prefix, pool, host, states) then
    listed[host] = true
    redis.call('SREM', prefix .. '__discovered__' .. pool, host)
    local before = redis.call('HGET', spared, host)
    if before ~= mark then
      redis.call('HSET', spared, host, mark)
      local into = before and changed or new
      into[#into + 1] = host
      into[#into + 1] = mark
    end
  end
end
for _, host in ipairs(redis.call('HKEYS', spared)) do
  if not listed[host] then
    redis.call('HDEL', spared, host)
    dropped[#dropped + 1] = host
  end
end
return {new, changed, dropped}
