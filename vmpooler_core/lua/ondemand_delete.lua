#!lua
-- DELETE /api/v3/ondemandvm/<id>: the request is closed as deleted, its VMs delivered so far go back
-- (running -> completed: the manager destroys them), its clones still to start are dropped; its hash
-- expires after ARGV[3] seconds. Its VMs still being cloned are destroyed once they boot (ondemand_deliver.lua).
--
-- ARGV[1] prefix  ARGV[2] request id  ARGV[3] seconds the hash is kept  ARGV[4] an entry for the released
-- VMs' history (history.lua)
--
-- Returns 0 when there is no such request, 1 when it was deleted before, 2 when deleted now.
local prefix, id, ttl, entry = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local state = od_state(prefix, id)
if state == 'gone' then return 0 end
if state == 'deleted' then return 1 end
od_close(prefix, id, 'deleted', ttl, entry, '')
return 2
