-- A library, not a script: scripts.py puts it in front of checkout.lua and index_held.lua.
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
