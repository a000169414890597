#!lua
-- The clone slots of `task_limit`, shared by every manager on this Redis: a manager takes one before it
-- reserves a VM and starts a clone, and gives it back once the provider's part of the clone is over.
-- Each manager's share is <prefix>__tasks__clone__managers[id] (the hash presence.lua keeps too), and
-- only live managers' shares count (managers.lua): a manager killed mid-clone gives its slots back when
-- its heartbeat goes stale, without anyone's help.
--
-- ARGV[1] prefix  ARGV[2] manager id  ARGV[3] now (epoch seconds)  ARGV[4] seconds after which a silent
-- manager counts as dead  ARGV[5] the slots this manager holds after the call  ARGV[6] task_limit when
-- taking a slot ("" when giving one back, or publishing the share as it is)
--
-- The share is the manager's own count, not an increment: a call repeated after a lost reply, or one that
-- follows a Redis outage in which the share was dropped, leaves it right. (The manager sends these calls
-- one at a time, so they arrive in order.)
--
-- Returns {1, slots in use by all live managers} when done; {0, slots in use} when taking would go over
-- task_limit (nothing changed).
local prefix, id, now, stale, mine, limit = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5]), ARGV[6]
local counts = prefix .. '__tasks__clone__managers'
local others = live_clones(prefix, now, stale, id)
if limit ~= '' then
  if others + mine > tonumber(limit) then return {0, others} end
  -- Taking a slot is a sign of life: the share must count from now on, whatever the last heartbeat was.
  redis.call('ZADD', prefix .. '__heartbeats', now, id)
end
if mine > 0 then redis.call('HSET', counts, id, mine) else redis.call('HDEL', counts, id) end
redis.call('SET', prefix .. '__tasks__clone', others + mine)
return {1, others + mine}
