-- A library, not a script: scripts.py puts it in front of the scripts that need to know which managers
-- are alive (presence.lua, clone_slot.lua, take_tasks.lua).
--
-- A manager is alive while its heartbeat in <prefix>__heartbeats (zset id -> last beat, epoch seconds,
-- written by presence.lua) is less than `stale` seconds old. What a dead manager held (clone slots,
-- disk and snapshot tasks taken) is given back by whichever manager looks next.
local function manager_live(prefix, id, now, stale)
  local beat = redis.call('ZSCORE', prefix .. '__heartbeats', id)
  if not beat then return false end
  return tonumber(beat) >= now - stale
end

-- The clones in flight of every live manager but `skip` (<prefix>__tasks__clone__managers, hash id ->
-- clones), dropping the entries of dead managers: their clones died with them.
local function live_clones(prefix, now, stale, skip)
  local counts = prefix .. '__tasks__clone__managers'
  local total = 0
  local flat = redis.call('HGETALL', counts)
  for i = 1, #flat, 2 do
    if not manager_live(prefix, flat[i], now, stale) then
      redis.call('HDEL', counts, flat[i])
    elseif flat[i] ~= skip then
      total = total + tonumber(flat[i + 1])
    end
  end
  return total
end
