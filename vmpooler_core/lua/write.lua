#!lua
-- The API's plain writes (a token made or revoked, a VM's lifetime or tags, a disk or snapshot task
-- queued) as one script, so that the fence (fence.lua, put in front) guards them as it guards the state
-- changes: a former primary must not answer a write that it is about to throw away.
--
-- ARGV[1] prefix   ARGV[2] the request's deadline (deadline.lua; "" = none, as for the manager's writes)
-- then each command: the number of its words, then its words (the command first)
--
-- Returns the reply of each command, or the error LATE ... (none run: see deadline.lua).
local replies = {}
local i = 3
while i <= #ARGV do
  local words = tonumber(ARGV[i])
  replies[#replies + 1] = redis.call(unpack(ARGV, i + 1, i + words))
  i = i + words + 1
end
return replies
