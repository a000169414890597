-- A library, not a script: scripts.py puts it in front of checkout.lua, ondemand_submit.lua and
-- index_held.lua.
--
-- index_held(prefix, pools): put every running VM checked out with a token that exists into that token's
-- held set (<prefix>__held__<token>, which the cap on VMs per token counts: checkout.lua), for the pools
-- of the `vmpooler__pools` set and `pools`; then mark the sets complete (<prefix>__held_sets). Our scripts
-- keep the sets from then on; the original's (today's, on the same Redis) never did, so the VMs it
-- handed out are found here: O(running VMs), once, not at each checkout.
local function index_held(prefix, pools)
  local seen = {}
  local function index(pool)
    if seen[pool] then return end
    seen[pool] = true
    for _, host in ipairs(redis.call('SMEMBERS', prefix .. '__running__' .. pool)) do
      local owner = redis.call('HGET', prefix .. '__vm__' .. host, 'token:token')
      if owner and owner ~= '' and redis.call('EXISTS', prefix .. '__token__' .. owner) == 1 then
        redis.call('SADD', prefix .. '__held__' .. owner, host)
      end
    end
  end
  for _, pool in ipairs(redis.call('SMEMBERS', prefix .. '__pools')) do index(pool) end
  for _, pool in ipairs(pools) do index(pool) end
  redis.call('SET', prefix .. '__held_sets', '1')
end

-- held_count(prefix, token, over): how many VMs `token` holds (<prefix>__held__<token>), the sets made
-- complete first if they are not known to be. When that count passes `over`, the set is cleaned before
-- it is believed: what the token no longer holds (a VM taken out of `running` by hand, or by a program
-- that does not keep the held set) is dropped, O(held), and only on this path.
local function held_count(prefix, token, over, pools)
  if redis.call('EXISTS', prefix .. '__held_sets') == 0 then index_held(prefix, pools) end
  local held_key = prefix .. '__held__' .. token
  local held = redis.call('SCARD', held_key)
  if held <= over then return held end
  for _, host in ipairs(redis.call('SMEMBERS', held_key)) do
    local f = redis.call('HMGET', prefix .. '__vm__' .. host, 'pool', 'template', 'token:token')
    local pool = f[1] or f[2]
    if f[3] ~= token or not pool or redis.call('SISMEMBER', prefix .. '__running__' .. pool, host) == 0 then
      redis.call('SREM', held_key, host)
    end
  end
  return redis.call('SCARD', held_key)
end
