-- Record a clone about to start: the VM enters `pending` before the provider is called, so a crash
-- mid-clone leaves a Redis record that reconciliation can match against the inventory.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] clone stamp  ARGV[5] template
--
-- Returns 1, or 0 when the hostname is already in use (its hash exists): the caller picks another.
local prefix, pool, host, now, template = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local vm = prefix .. '__vm__' .. host
if redis.call('EXISTS', vm) == 1 then return 0 end
redis.call('HSET', vm, 'clone', now, 'template', pool, 'pool', pool, 'clone_template', template)
redis.call('SADD', prefix .. '__pending__' .. pool, host)
return 1
