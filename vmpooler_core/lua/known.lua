-- A library, not a script: scripts.py puts it in front of the scripts that look for a VM in the sets of
-- its pool (discover.lua, spare.lua).
--
-- known(prefix, pool, host, states): is `host` in one of the `states` sets of `pool`, or, when its hash
-- names another pool, in one of that pool's? Two pools may share a folder, and neither may take the
-- other's VMs for unknown ones.
local function known(prefix, pool, host, states)
  local function in_sets(p)
    for _, state in ipairs(states) do
      if redis.call('SISMEMBER', prefix .. '__' .. state .. '__' .. p, host) == 1 then return true end
    end
    return false
  end
  if in_sets(pool) then return true end
  local owner = redis.call('HGET', prefix .. '__vm__' .. host, 'pool')
  return (owner and owner ~= pool and in_sets(owner)) or false
end
