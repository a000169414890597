#!lua
-- Second look at discovered VMs (a pass after they were found): a VM that meanwhile turned up in another
-- set of its pool only leaves `discovered`; every other one moves to `completed`, to be destroyed.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3..] discovered hosts that are still in the provider's folder
--
-- Returns the hosts moved to completed.
local prefix, pool = ARGV[1], ARGV[2]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end
local moved = {}
for h = 3, #ARGV do
  local host, elsewhere = ARGV[h], false
  for _, state in ipairs({'pending', 'ready', 'running', 'completed'}) do
    if redis.call('SISMEMBER', key(state, pool), host) == 1 then elsewhere = true; break end
  end
  if elsewhere then
    redis.call('SREM', key('discovered', pool), host)
  elseif redis.call('SMOVE', key('discovered', pool), key('completed', pool), host) == 1 then
    moved[#moved + 1] = host
  end
end
return moved
