#!lua
-- Drop replicas from the record that fence.lua (put in front of this file) keeps, after the client made
-- sure that no failover is under way: the replica restarted, or was taken away. A replica that came back
-- online meanwhile stays. Replicas online are recorded again by the next fenced script.
--
-- ARGV[1] prefix   ARGV[2..] replica addresses (ip:port) to drop
--
-- Returns the number dropped.
local record = ARGV[1] .. '__replicas'
local role, replid, online = replication()
local recorded = redis.call('GET', record)
if role ~= 'master' or not recorded then return 0 end
local was = words(recorded)
if was[1] ~= replid then return 0 end
local present, drop = {}, {}
for _, address in ipairs(online) do present[address] = true end
for i = 2, #ARGV do drop[ARGV[i]] = true end
local kept, dropped = {replid}, 0
for i = 2, #was do
  if drop[was[i]] and not present[was[i]] then dropped = dropped + 1 else kept[#kept + 1] = was[i] end
end
if dropped > 0 then redis.call('SET', record, table.concat(kept, ' ')) end
return dropped
