#!lua
-- Return a checked-out VM: running -> completed, in one atomic step.
--
-- ARGV[1] prefix   ARGV[2] the request's deadline (deadline.lua; "" = none)
-- ARGV[3] host   ARGV[4] caller's token ("" = none)
-- ARGV[5] time stamp, ARGV[6] client (address, or cli:<user>), ARGV[7] request id: the VM's history entry
-- ARGV[8..14] optional: the rate-limit arguments of gcra.lua (put in front of this file, with history.lua)
--
-- Returns {"ok", pool} (then the token's user when the VM was checked out with the caller's token)
--       | {"notfound"} | {"unauthorized", pool} (another token's VM)
--       | {"unauthorized", pool, "revoked"} (the VM's own token, no longer existing) | {"notrunning", pool}
--       | {"ratelimited", ...} (nothing done: see gcra.lua)
--       | the error LATE ... (nothing done: Redis ran it after the deadline, see deadline.lua)
local prefix, host, token, now, client, request = ARGV[1], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end

local limited = rate_limit(prefix, 8)
if limited then return limited end

local vm = key('vm', host)
if redis.call('EXISTS', vm) == 0 then return {'notfound'} end
local fields = redis.call('HMGET', vm, 'pool', 'template', 'token:token', 'token:user')
local pool = fields[1] or fields[2]
if not pool then return {'notfound'} end
-- A VM checked out with a token goes back only with that same token (the original accepted any), and
-- only while the token exists: a revoked token returns nothing.
local owner = fields[3]
if owner and owner ~= '' and owner ~= token then return {'unauthorized', pool} end
if owner and owner ~= '' and redis.call('EXISTS', key('token', owner)) == 0 then
  return {'unauthorized', pool, 'revoked'}
end
if redis.call('SMOVE', key('running', pool), key('completed', pool), host) == 0 then
  return {'notrunning', pool}
end
redis.call('HDEL', key('active', pool), host)
local user = nil
if owner and owner ~= '' then
  redis.call('SREM', key('held', owner), host)
  user = fields[4] or nil
end
history(prefix, host, cjson.encode({at = now, event = 'return', user = user or '-', client = client,
                                    request = request}))
if user then return {'ok', pool, user} end
return {'ok', pool}
