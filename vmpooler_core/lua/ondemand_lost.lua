#!lua
-- A pending VM is lost: its clone failed, it never passed its ready check in time, or its clone died with
-- its manager. In one step it leaves `pending` (to `completed`, for a VM that exists and must be
-- destroyed; or forgotten, its hash and history kept for a while, when the provider has none), and, when it
-- was cloned for a request that is still open, its clone goes back into the request's task
-- (ondemand.lua's od_lost), so the request is not left short.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] "completed" or "forget"
-- ARGV[5] "retry" when this counts against the request's retries ("" for a dead manager's clone)
-- ARGV[6] retries allowed  ARGV[7] seconds a forgotten VM's hash (and a failed request) is kept
-- ARGV[8] the VM's history entry  ARGV[9] why (a failed request's failure_reason)
-- ARGV[10] an entry for the history of the VMs a failed request releases
--
-- Returns -1 when the VM was not pending (nothing done); else what became of its request: 0 nothing (no
-- request, or closed), 1 its clone put back, 2 the request failed (out of retries).
local prefix, pool, host, mode, retry = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5] == 'retry'
local max, ttl, entry, reason, released = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8], ARGV[9], ARGV[10]
local pending, vm = od_key(prefix, 'pending', pool), od_key(prefix, 'vm', host)
if redis.call('SISMEMBER', pending, host) == 0 then return -1 end
if mode == 'completed' then
  redis.call('SMOVE', pending, od_key(prefix, 'completed', pool), host)
  history(prefix, host, entry)
else
  redis.call('SREM', pending, host)
  history(prefix, host, entry)
  redis.call('EXPIRE', history_key(prefix, host), ttl)
  redis.call('EXPIRE', vm, ttl)
end
local marks = redis.call('HMGET', vm, 'request_id', 'pool_alias')
if not marks[1] then return 0 end
return od_lost(prefix, marks[1], marks[2] or pool, pool, retry, max, ttl, released, reason)
