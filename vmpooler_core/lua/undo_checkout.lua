#!lua
-- Put back the VMs of a checkout that was never answered: `durability` asked for the change to reach a
-- replica (or the disk) before the answer, and it did not in time, so the client was told 503 and never
-- learnt the hosts. running -> ready, only while each is still running with this checkout's stamp; the
-- fields checkout.lua set go, and so does its place in the token's held set.
--
-- ARGV[1] prefix   ARGV[2] the checkout's stamp   ARGV[3..] pool, host pairs
--
-- Returns the number put back.
local prefix, stamp = ARGV[1], ARGV[2]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end
local back = 0
for i = 3, #ARGV - 1, 2 do
  local pool, host = ARGV[i], ARGV[i + 1]
  local vm = key('vm', host)
  if redis.call('HGET', vm, 'checkout') == stamp and redis.call('SISMEMBER', key('running', pool), host) == 1 then
    local owner = redis.call('HGET', vm, 'token:token')
    if owner and owner ~= '' then
      redis.call('SREM', key('held', owner), host)
      redis.call('HDEL', vm, 'token:token', 'token:user', 'lifetime')
    end
    redis.call('HDEL', vm, 'checkout')
    redis.call('HDEL', key('active', pool), host)
    redis.call('SMOVE', key('running', pool), key('ready', pool), host)
    back = back + 1
  end
end
return back
