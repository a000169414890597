#!lua
-- Record a clone about to start: the VM enters `pending` before the provider is called, so a crash
-- mid-clone leaves a Redis record that reconciliation can match against the inventory.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] clone stamp  ARGV[5] template
-- ARGV[6] pool size  ARGV[7] id of the manager that must hold the pool's lease
-- ARGV[8] optional: the first entry of the VM's history (history.lua, put in front of this file)
--
-- Returns 1; -2 when the lease is no longer that manager's (another one took the pool over); -1 when
-- ready + pending already reach the size; 0 when the hostname is already in use (its hash exists): the
-- caller picks another. Checking lease and size here, in the same atomic step that records the VM, is
-- what guarantees that no number of managers ever over-fills.
local prefix, pool, host, now, template = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local size, owner = tonumber(ARGV[6]), ARGV[7]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end
if redis.call('GET', key('lease', pool)) ~= owner then return -2 end
if redis.call('SCARD', key('ready', pool)) + redis.call('SCARD', key('pending', pool)) >= size then
  return -1
end
local vm = key('vm', host)
if redis.call('EXISTS', vm) == 1 then return 0 end
redis.call('HSET', vm, 'clone', now, 'template', pool, 'pool', pool, 'clone_template', template,
           'cloned_by', owner)
redis.call('SADD', key('pending', pool), host)
-- A new VM: whatever history an earlier VM of the same name left (its hash expired) is not its own.
redis.call('DEL', history_key(prefix, host))
if ARGV[8] and ARGV[8] ~= '' then history(prefix, host, ARGV[8]) end
return 1
