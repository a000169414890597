#!lua
-- A pending VM cloned for an on-demand request has passed its ready check: it goes straight to its request,
-- pending -> running (checked out, with the request's token and the checkout time that starts its
-- lifetime), into the request's set; the request is ready once every VM is there. All in one step.
-- A VM whose request is closed (deleted, failed, or already filled) goes to completed instead.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3] host  ARGV[4] time stamp  ARGV[5] lifetime hours for a request made
-- with a token ("" = none)  ARGV[6] seconds a ready request is kept  ARGV[7] the VM's history entry when
-- delivered  ARGV[8] its entry when its request is closed
--
-- Returns 0 when the VM was not pending (or not cloned for a request): nothing done; 1 delivered; 2 its request is closed (VM completed); 3 delivered,
-- and the request is now ready.
local prefix, pool, host, now, lifetime, ready_ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], tonumber(ARGV[6])
local delivered, closed = ARGV[7], ARGV[8]
local pending, vm = od_key(prefix, 'pending', pool), od_key(prefix, 'vm', host)
if redis.call('SISMEMBER', pending, host) == 0 then return 0 end
local marks = redis.call('HMGET', vm, 'request_id', 'pool_alias')
local id, alias = marks[1], marks[2] or pool
if not id then return 0 end
local request = od_request_key(prefix, id)
local triples = od_triples(redis.call('HGET', request, 'requested'))
local wanted = 0
for _, t in ipairs(triples) do
  if t[1] == alias and t[2] == pool then wanted = t[3] end
end
local set = od_vms_key(prefix, id, alias, pool)
if od_state(prefix, id) ~= 'open' or redis.call('SCARD', set) >= wanted then
  redis.call('SMOVE', pending, od_key(prefix, 'completed', pool), host)
  history(prefix, host, closed)
  return 2
end
redis.call('SMOVE', pending, od_key(prefix, 'running', pool), host)
redis.call('HSET', od_key(prefix, 'active', pool), host, now)
redis.call('HSET', vm, 'ready', now, 'check', now, 'checkout', now)
local token = redis.call('HMGET', request, 'token:token', 'token:user')
if token[1] and token[1] ~= '' then
  redis.call('HSET', vm, 'token:token', token[1], 'token:user', token[2] or '')
  redis.call('SADD', od_key(prefix, 'held', token[1]), host)
  if lifetime ~= '' then redis.call('HSET', vm, 'lifetime', lifetime) end
end
redis.call('SADD', set, host)
history(prefix, host, delivered)
if od_filled(prefix, id, triples) then
  od_close(prefix, id, 'ready', ready_ttl, '', '')
  return 3
end
return 1
