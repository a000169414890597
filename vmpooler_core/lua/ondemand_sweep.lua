#!lua
-- A manager's pass over the on-demand requests, in one atomic step (any manager may run it; a second run
-- finds nothing left to do):
-- 1. new requests are taken in: each (alias, pool, count) becomes a clone task, and the request moves to
--    the processing queue with its submit time (one that was deleted or is malformed is dropped);
-- 2. requests being filled are settled: ready once every VM is delivered (the delivery usually says so
--    itself), failed once older than the request TTL (their VMs delivered so far go back).
-- Then it answers the clone tasks, which the managers holding the pools' leases start (ondemand_reserve.lua).
--
-- ARGV[1] prefix  ARGV[2] now (epoch seconds)  ARGV[3] request TTL (seconds)  ARGV[4] seconds a failed
-- request is kept  ARGV[5] seconds a ready request is kept  ARGV[6] an entry for the history of the VMs a
-- failed request releases
--
-- Returns {taken in, ready, failed, tasks}: lists of request ids, and the task members.
local prefix, now, ttl, failed_ttl, ready_ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),
  tonumber(ARGV[5])
local entry = ARGV[6]
local taken, ready, failed = {}, {}, {}

local new = redis.call('ZRANGE', prefix .. OD_NEW, 0, -1, 'WITHSCORES')
for i = 1, #new, 2 do
  local id, score = new[i], new[i + 1]
  redis.call('ZREM', prefix .. OD_NEW, id)
  local triples = od_triples(redis.call('HGET', od_request_key(prefix, id), 'requested'))
  if od_state(prefix, id) == 'open' and #triples > 0 then
    for _, t in ipairs(triples) do od_task_add(prefix, t[1], t[2], id, t[3], score) end
    redis.call('ZADD', prefix .. OD_PROCESSING, score, id)
    taken[#taken + 1] = id
  end
end

local processing = redis.call('ZRANGE', prefix .. OD_PROCESSING, 0, -1, 'WITHSCORES')
for i = 1, #processing, 2 do
  local id, score = processing[i], tonumber(processing[i + 1])
  if od_state(prefix, id) ~= 'open' then
    redis.call('ZREM', prefix .. OD_PROCESSING, id)
  elseif od_filled(prefix, id, od_triples(redis.call('HGET', od_request_key(prefix, id), 'requested'))) then
    od_close(prefix, id, 'ready', ready_ttl, entry, '')
    ready[#ready + 1] = id
  elseif now - score > ttl then
    od_close(prefix, id, 'failed', failed_ttl, entry, '')  -- no failure_reason: the TTL's
    failed[#failed + 1] = id
  end
end

return {taken, ready, failed, redis.call('ZRANGE', prefix .. OD_TASKS, 0, -1)}
