#!lua
-- Record a clone for an on-demand request about to start (add_pending.lua's counterpart): one clone taken
-- from the request's task and the VM entering `pending`, marked with the request, in one atomic step; the
-- provider is called only after. So a crash at any point leaves either the clone in the task or a pending
-- VM that reconciliation matches against the inventory (and puts back in the task if it has no VM).
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] clone stamp  ARGV[5] template
-- ARGV[6] id of the manager that must hold the pool's lease  ARGV[7] alias  ARGV[8] request id
-- ARGV[9] the first entry of the VM's history (history.lua)
--
-- Returns 1; -2 when the lease is no longer that manager's; -1 when the task has no clone left (another
-- clone took it, or the request is closed); 0 when the hostname is in use (the caller picks another).
-- Unlike a refill, a request's clone does not count against the pool's size.
local prefix, pool, host, now, template, owner = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local alias, id, entry = ARGV[7], ARGV[8], ARGV[9]
if redis.call('GET', od_key(prefix, 'lease', pool)) ~= owner then return -2 end
if od_state(prefix, id) ~= 'open' then return -1 end
local vm = od_key(prefix, 'vm', host)
if redis.call('EXISTS', vm) == 1 then return 0 end
local member, n = od_task(prefix, alias, pool, id)
if not member or n < 1 then return -1 end
od_task_add(prefix, alias, pool, id, -1, 0)
redis.call('HSET', vm, 'clone', now, 'template', pool, 'pool', pool, 'clone_template', template, 'cloned_by', owner,
           'request_id', id, 'pool_alias', alias)
redis.call('SADD', od_key(prefix, 'pending', pool), host)
redis.call('DEL', history_key(prefix, host))
if entry ~= '' then history(prefix, host, entry) end
return 1
