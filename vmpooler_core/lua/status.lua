#!lua flags=no-writes
-- Everything /status needs, in one round trip, computed inside Redis so the API's own work does not
-- grow with the number of VMs or of boots recorded today.
--
-- ARGV[1] prefix  ARGV[2] date (YYYY-MM-DD)  ARGV[3..] pool names
--
-- Returns {clone_tasks, boot_count, boot_sum, boot_min, boot_max, clone_count, clone_sum, clone_min,
--          clone_max, then per pool: ready, running, pending, completed, size set through the pool
--          configuration API ("" = none), last boot ("" = none)}  (numbers as strings)
local prefix, date = ARGV[1], ARGV[2]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end

local function aggregate(hash)
  local n, sum, lo, hi = 0, 0, nil, nil
  for _, v in ipairs(redis.call('HVALS', hash)) do
    local x = tonumber(v)
    if x then
      n = n + 1; sum = sum + x
      if not lo or x < lo then lo = x end
      if not hi or x > hi then hi = x end
    end
  end
  return {tostring(n), tostring(sum), tostring(lo or 0), tostring(hi or 0)}
end

-- Clones in flight: ours and the original's pool clones, and the original's on-demand clones (its managers
-- count those apart; ours keep that count at 0).
local cloning = (tonumber(redis.call('GET', prefix .. '__tasks__clone')) or 0)
  + (tonumber(redis.call('GET', prefix .. '__tasks__ondemandclone')) or 0)
local out = {tostring(cloning)}
for _, v in ipairs(aggregate(key('boot', date))) do out[#out + 1] = v end
for _, v in ipairs(aggregate(key('clone', date))) do out[#out + 1] = v end
for p = 3, #ARGV do
  for _, state in ipairs({'ready', 'running', 'pending', 'completed'}) do
    out[#out + 1] = tostring(redis.call('SCARD', key(state, ARGV[p])))
  end
  out[#out + 1] = redis.call('HGET', key('config', 'poolsize'), ARGV[p]) or ''
  out[#out + 1] = redis.call('HGET', prefix .. '__lastboot', ARGV[p]) or ''
end
return out
