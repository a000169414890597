#!lua
-- Mark VMs found in a pool's folder that Redis does not know: they go to `discovered`, from where the
-- manager completes (destroys) them on a later pass unless they turned up in another set meanwhile.
-- The manager passes only VMs it may destroy: those carrying this pooler's mark (or no mark, with
-- `purge_unconfigured`); the others are spare.lua's.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3..] host names seen in the provider's inventory
--
-- A VM whose hash names another pool and which sits in one of that pool's sets is known too (known.lua).
--
-- Returns the hosts newly discovered.
local prefix, pool = ARGV[1], ARGV[2]
local states = {'pending', 'ready', 'running', 'completed', 'discovered'}

local found = {}
for h = 3, #ARGV do
  local host = ARGV[h]
  if not known(prefix, pool, host, states) then
    redis.call('SADD', prefix .. '__discovered__' .. pool, host)
    found[#found + 1] = host
  end
end
return found
