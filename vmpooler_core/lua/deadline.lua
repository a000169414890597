-- A library, not a script: scripts.py puts it in front of the scripts that change state for a request
-- (checkout, return, write) and calls late(ARGV[2]) before their first line, before the fence's check.
--
-- Why: the API answers 503 at a request's deadline, but a script it sent before then can still reach
-- Redis afterwards (Redis busy, the network slow), and a checkout the client was told failed would take
-- a VM nobody holds. Only Redis knows when it runs the script, so the script checks, on Redis's clock
-- (TIME), and does nothing when late. The deadline (server time, microseconds since the epoch; "" for
-- none, as for the manager's and the CLI's calls) comes from vmpooler_core/server_clock.py, which turns
-- the request's local deadline into one of Redis's clock.
--
-- late(deadline) returns nil when the script may go on; else the error reply it must return, having done
-- nothing: "LATE <now> <deadline>" (microseconds).
--
-- TIME before a write needs the script replicated by its effects: fence.lua, in front of this library,
-- asks Redis before 5 for that (Redis 5 and later do it by default).
local function late(deadline)
  if deadline == '' then return nil end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
  if now <= tonumber(deadline) then return nil end
  return redis.error_reply(string.format('LATE %.0f %s', now, deadline))
end
