#!lua
-- A manager's heartbeat, and the clone counter of /status kept exact across managers that come and go.
--
-- ARGV[1] prefix  ARGV[2] manager id  ARGV[3] now (epoch seconds)  ARGV[4] seconds after which a silent
-- manager counts as dead  ARGV[5] this manager's clones in flight ("" = unchanged)  ARGV[6] "leave" on
-- a clean stop, else ""
--
-- Keys: <prefix>__heartbeats (zset id -> last beat), <prefix>__tasks__clone__managers (hash id -> clones
-- in flight: the clone slots it holds, see clone_slot.lua), <prefix>__tasks__clone (string: their sum,
-- the original's counter, read by /status). The sum is recomputed from live managers only (managers.lua),
-- so a manager killed mid-clone cannot leave the counter too high forever (the original's INCR/DECR
-- drifted, and resetting it at start broke other managers).
--
-- Returns the ids of the live managers.
local prefix, id, now, stale, clones, leave = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  ARGV[5], ARGV[6]
local beats = prefix .. '__heartbeats'
local counts = prefix .. '__tasks__clone__managers'
if leave == 'leave' then
  redis.call('ZREM', beats, id)
  redis.call('HDEL', counts, id)
else
  redis.call('ZADD', beats, now, id)
  if clones ~= '' then redis.call('HSET', counts, id, clones) end
end
redis.call('ZREMRANGEBYSCORE', beats, '-inf', '(' .. tostring(now - stale))
redis.call('SET', prefix .. '__tasks__clone', live_clones(prefix, now, stale, nil))
return redis.call('ZRANGE', beats, 0, -1)
