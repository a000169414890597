-- A library, not a script: scripts.py puts it in front of the scripts that count what pools are asked
-- for (checkout.lua, ondemand_submit.lua), for the pools sized to demand (vmpooler_core/demand.py).
--
-- Each pool has one ring of DEMAND_RING slots (<prefix>__demand__<pool>, a hash): the slot of a bucket
-- (Redis's clock, TIME, in buckets of `width` seconds) holds "<bucket> <served> <refused> <ondemand>",
-- and a slot still holding an older bucket is started afresh. So the ring never grows, and counting is
-- two commands per pool, O(1).
--
-- count_demand(prefix, pool, width, served, refused, ondemand)

-- Redis < 5 replicates scripts verbatim unless told otherwise, and TIME before a write needs the
-- script replicated by its effects. (A no-op from Redis 7 on.)
if redis.replicate_commands then redis.replicate_commands() end

local DEMAND_RING = 256  -- demand.py's RING
local demand_bucket = nil

local function count_demand(prefix, pool, width, served, refused, ondemand)
  if not demand_bucket then
    local time = redis.call('TIME')
    demand_bucket = math.floor((tonumber(time[1]) + tonumber(time[2]) / 1000000) / width)
  end
  local key = prefix .. '__demand__' .. pool
  local slot = string.format('%d', demand_bucket % DEMAND_RING)
  local bucket, s, r, o = string.match(redis.call('HGET', key, slot) or '', '^(%-?%d+) (%d+) (%d+) (%d+)$')
  if tonumber(bucket) ~= demand_bucket then s, r, o = 0, 0, 0 end
  redis.call('HSET', key, slot, string.format('%d %d %d %d', demand_bucket, tonumber(s) + served,
                                              tonumber(r) + refused, tonumber(o) + ondemand))
end
