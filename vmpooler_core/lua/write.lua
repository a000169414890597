#!lua
-- The API's plain writes (a token made or revoked, a VM's lifetime or tags, a disk or snapshot task
-- queued) as one script, so that the fence (fence.lua, put in front) guards them as it guards the state
-- changes: a former primary must not answer a write that it is about to throw away.
--
-- ARGV[1] prefix   ARGV[2] the request's deadline (deadline.lua; "" = none, as for the manager's writes)
-- then each command: the number of its words, then its words (the command first)
--
-- Conditions (guards.py) may be among the commands, in the same form. All are checked before anything
-- is written, so that what the API checked when it read the request still holds when it writes (a token
-- revoked, or the VM handed to another token, in between):
--   IF_OWNER <vm key> <token>         the VM was checked out with no token, or with <token>   else "owner"
--   IF_TOKEN <token key>              the token still exists                                  else "revoked"
--   IF_TAGS <vm key> <most> <field>...  with these tag:<name> fields the VM has at most <most>  else "tags"
--
-- Returns the reply of each command, or {"refused", why} (nothing written) when a condition fails, or the
-- error LATE ... (none run: see deadline.lua).
-- Each condition is given the positions of its arguments in ARGV (a tag list may be longer than unpack takes).
local conditions = {}
function conditions.IF_OWNER(first)
  local owner = redis.call('HGET', ARGV[first], 'token:token')
  return not owner or owner == '' or owner == ARGV[first + 1], 'owner'
end
function conditions.IF_TOKEN(first)
  return redis.call('EXISTS', ARGV[first]) == 1, 'revoked'
end
function conditions.IF_TAGS(first, last)
  local count, adding = 0, {}
  for n = first + 2, last do
    if not adding[ARGV[n]] then adding[ARGV[n]] = true; count = count + 1 end
  end
  for _, field in ipairs(redis.call('HKEYS', ARGV[first])) do
    if string.sub(field, 1, 4) == 'tag:' and not adding[field] then count = count + 1 end
  end
  return count <= tonumber(ARGV[first + 1]), 'tags'
end

local commands = {}
local i = 3
while i <= #ARGV do
  local words = tonumber(ARGV[i])
  local condition = conditions[ARGV[i + 1]]
  if condition then
    local holds, why = condition(i + 2, i + words)
    if not holds then return {'refused', why} end
  else
    commands[#commands + 1] = {i + 1, i + words}
  end
  i = i + words + 1
end
local replies = {}
for n, span in ipairs(commands) do replies[n] = redis.call(unpack(ARGV, span[1], span[2])) end
return replies
