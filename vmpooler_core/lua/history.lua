-- A library, not a script: scripts.py puts it in front of the scripts that change a VM's state
-- (checkout, return, move, forget, add_pending), so that the VM's history is written in the same atomic
-- step as the change itself: no second round trip, and never an entry without its change.
--
-- history(prefix, host, entry) appends one entry (a JSON object: time, event, who; see audit.py) to
-- <prefix>__history__<host> and keeps the newest HISTORY_LENGTH (keys.py's HISTORY_LENGTH: the same
-- number). The list has no expiry while the VM exists, and data_ttl once it is forgotten (forget.lua),
-- as the VM's hash.
local HISTORY_LENGTH = 50

local function history_key(prefix, host) return prefix .. '__history__' .. host end

local function history(prefix, host, entry)
  local key = history_key(prefix, host)
  if redis.call('RPUSH', key, entry) > HISTORY_LENGTH then  -- most VMs never get that far: no LTRIM
    redis.call('LTRIM', key, -HISTORY_LENGTH, -1)
  end
end
