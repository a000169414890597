#!lua
-- A task taken with take_tasks.lua leaves the manager's record: done (with what it changed on the VM,
-- in the same step, so a task is never recorded done without its result nor the reverse), or put back
-- in its queue for a later pass (its VM was busy, or the provider was unavailable).
--
-- ARGV[1] prefix  ARGV[2] manager id  ARGV[3] "done" or "back"  ARGV[4] queue ("disk", "snapshot",
-- "snapshot-revert")  ARGV[5] the task ("<host>:<argument>")  ARGV[6..] when done: field, value pairs
-- for the VM's hash (set only while the hash exists: a VM destroyed meanwhile is not brought back)
--
-- Returns 1 when the task was in the record, 0 when it was not (its record was put back meanwhile, the
-- manager having been taken for dead).
local prefix, id, mode, queue, task = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local record = prefix .. '__tasks__taken__' .. id
local field = queue .. ':' .. task
local held = tonumber(redis.call('HGET', record, field) or '0')
if held > 1 then redis.call('HSET', record, field, held - 1) elseif held == 1 then redis.call('HDEL', record, field) end
if mode == 'back' then
  redis.call('SADD', prefix .. '__tasks__' .. queue, task)
elseif #ARGV > 5 then
  local vm = prefix .. '__vm__' .. string.match(task, '^([^:]*)')
  if redis.call('EXISTS', vm) == 1 then redis.call('HSET', vm, unpack(ARGV, 6)) end
end
return held > 0 and 1 or 0
