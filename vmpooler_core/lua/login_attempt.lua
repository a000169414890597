#!lua
-- One login attempt, counted as a failure before the credentials are checked (login_outcome.lua takes
-- it back when they were right, or when no directory could judge them). Counting first is what makes
-- the limit hold under concurrency: a thousand attempts sent at once cannot all pass a check made
-- before any of them has failed.
--
-- ARGV[1] prefix (unused)   ARGV[2] the user name's key   ARGV[3] the client address's key
-- ARGV[4] failures allowed before delays start   ARGV[5] the user's longest delay (ms)
-- ARGV[6] the address's longest delay (ms)   ARGV[7] ms a count is kept after its last failure
--
-- Each key is a hash {n: failures, at: epoch ms of the last}. After `allowed` failures an attempt waits
-- 1 s after the last, then 2 s, 4 s... up to the longest delay of its kind.
-- Returns {'ok'} (counted) or, when either key must still wait (nothing counted),
-- {'throttled', ms to wait, 'user' | 'address'}.

-- Redis < 5 replicates scripts verbatim unless told otherwise, and this one reads TIME and then writes.
if redis.replicate_commands then redis.replicate_commands() end

local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local allowed = tonumber(ARGV[4])
local keep = tonumber(ARGV[7])

local function wait(key, longest)
  local state = redis.call('HMGET', key, 'n', 'at')
  local n, at = tonumber(state[1]) or 0, tonumber(state[2]) or 0
  if n < allowed then return 0 end
  local delay = math.min(longest, 1000 * 2 ^ (n - allowed))
  return math.max(0, math.ceil(at + delay - now))
end

local user_wait = wait(ARGV[2], tonumber(ARGV[5]))
local address_wait = wait(ARGV[3], tonumber(ARGV[6]))
if user_wait > 0 or address_wait > 0 then
  if user_wait >= address_wait then return {'throttled', user_wait, 'user'} end
  return {'throttled', address_wait, 'address'}
end
for index, key in ipairs({ARGV[2], ARGV[3]}) do
  redis.call('HINCRBY', key, 'n', 1)
  redis.call('HSET', key, 'at', now)
  -- Kept while its longest delay may still run, and `keep` after the last failure.
  redis.call('PEXPIRE', key, keep + tonumber(ARGV[4 + index]))
end
return {'ok'}
