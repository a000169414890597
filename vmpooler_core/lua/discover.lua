-- Mark VMs found in a pool's folder that Redis does not know: they go to `discovered`, from where the
-- manager completes (destroys) them on a later pass unless they turned up in another set meanwhile.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3..] host names seen in the provider's inventory
--
-- Returns the hosts newly discovered.
local prefix, pool = ARGV[1], ARGV[2]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end
local states = {'pending', 'ready', 'running', 'completed', 'discovered'}
local found = {}
for h = 3, #ARGV do
  local host, known = ARGV[h], false
  for _, state in ipairs(states) do
    if redis.call('SISMEMBER', key(state, pool), host) == 1 then known = true; break end
  end
  if not known then
    redis.call('SADD', key('discovered', pool), host)
    found[#found + 1] = host
  end
end
return found
