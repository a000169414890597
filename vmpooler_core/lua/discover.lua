-- Mark VMs found in a pool's folder that Redis does not know: they go to `discovered`, from where the
-- manager completes (destroys) them on a later pass unless they turned up in another set meanwhile.
--
-- ARGV[1] prefix  ARGV[2] pool  ARGV[3..] host names seen in the provider's inventory
--
-- A VM whose hash names another pool and which sits in one of that pool's sets is known too: two pools
-- may share a folder, and neither may destroy the other's VMs.
--
-- Returns the hosts newly discovered.
local prefix, pool = ARGV[1], ARGV[2]
local function key(kind, name) return prefix .. '__' .. kind .. '__' .. name end
local states = {'pending', 'ready', 'running', 'completed', 'discovered'}

local function known_in(p, host)
  for _, state in ipairs(states) do
    if redis.call('SISMEMBER', key(state, p), host) == 1 then return true end
  end
  return false
end

local found = {}
for h = 3, #ARGV do
  local host = ARGV[h]
  local known = known_in(pool, host)
  if not known then
    local owner = redis.call('HGET', key('vm', host), 'pool')
    if owner and owner ~= pool then known = known_in(owner, host) end
  end
  if not known then
    redis.call('SADD', key('discovered', pool), host)
    found[#found + 1] = host
  end
end
return found
