#!lua
-- Take disk, snapshot and revert tasks so that none is lost when the manager that took it dies: each
-- task moves, in this one step, from its queue to the manager's record of tasks taken, and leaves that
-- record only once it is done or put back (task_done.lua). The record of a manager that is no longer
-- alive (managers.lua) goes back to the queues here, before anything is taken.
--
-- ARGV[1] prefix  ARGV[2] manager id  ARGV[3] now (epoch seconds)  ARGV[4] seconds after which a silent
-- manager counts as dead  ARGV[5] "own" to put this manager's own record back first (a manager started
-- again with the same id: what it had taken died with the process), else ""  ARGV[6] how many tasks
-- to take from each queue  ARGV[7..] the queues: "disk", "snapshot", "snapshot-revert"
--
-- Keys: <prefix>__tasks__<queue> (the original's sets of "<host>:<argument>", filled by the API),
-- <prefix>__tasks__taken__<id> (hash "<queue>:<host>:<argument>" -> how many of it are taken: the API
-- may queue a task again while it runs), <prefix>__tasks__takers (set of the ids with such a record).
--
-- Returns {tasks put back, then per queue: how many were taken, the tasks}.
local prefix, id, now, stale, own, count = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5],
  tonumber(ARGV[6])
local takers = prefix .. '__tasks__takers'
local function record(manager) return prefix .. '__tasks__taken__' .. manager end

local requeued = 0
for _, manager in ipairs(redis.call('SMEMBERS', takers)) do
  if (manager == id and own == 'own') or (manager ~= id and not manager_live(prefix, manager, now, stale)) then
    local flat = redis.call('HGETALL', record(manager))
    for i = 1, #flat, 2 do
      local queue, task = string.match(flat[i], '^([^:]*):(.*)$')
      redis.call('SADD', prefix .. '__tasks__' .. queue, task)
      requeued = requeued + 1
    end
    redis.call('DEL', record(manager))
  end
  if redis.call('EXISTS', record(manager)) == 0 then redis.call('SREM', takers, manager) end
end

local reply = {requeued}
for q = 7, #ARGV do
  local queue = ARGV[q]
  local tasks = redis.call('SPOP', prefix .. '__tasks__' .. queue, count)
  reply[#reply + 1] = #tasks
  for _, task in ipairs(tasks) do
    local field = queue .. ':' .. task  -- (HGET and HSET, not HINCRBY: the README's least ACL has no HINCRBY)
    redis.call('HSET', record(id), field, (tonumber(redis.call('HGET', record(id), field)) or 0) + 1)
    reply[#reply + 1] = task
  end
  if #tasks > 0 then redis.call('SADD', takers, id) end
end
return reply
