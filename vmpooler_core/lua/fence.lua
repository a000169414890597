-- A library, not a script: scripts.py puts it in front of every script that changes the state of a VM,
-- a pool's lease or a manager's presence, and calls fenced(ARGV[1]) before the script's first line.
--
-- Why: in a Sentinel failover the promoted replica stops replicating at once, but the former primary
-- goes on accepting writes until Sentinel turns it into a replica, seconds later (some 10 s after a
-- `SENTINEL FAILOVER`), and throws them away then: a checkout it answered is undone and its VM handed
-- out again. The former primary does see its replica leave, the instant the replica is promoted. So
-- each script first compares the replicas online now (INFO replication) with those recorded in
-- `<prefix>__replicas`, and refuses to run when a recorded one is missing: an error reply
-- "FENCED <run id> <ip:port>...". The client then asks the sentinels (scripts.py, primary.py): during
-- a failover it answers 503 and follows the new primary; when none is under way (a replica restarted,
-- or was taken away) it drops the missing replicas from the record (unfence.lua) and runs the script
-- again.
--
-- The record is "<master_replid> <ip:port> <ip:port> ..." (the replicas sorted). A promoted replica
-- takes a new replication id, so the record it inherited does not bind it: it starts its own. A
-- replica is recorded once it is online (its initial sync done).
--
-- What the fence cannot see: a change the former primary answered just before the promotion and had
-- not yet delivered to the replica. scripts.py closes that by answering a checkout or a return only
-- once the replicas recorded here confirm it (WAIT); bench/fence_window.py measures both.

-- Redis < 5 replicates a script verbatim unless told otherwise, and one that reads INFO and then
-- writes must be replicated by its effects. (A no-op from Redis 7 on.)
if redis.replicate_commands then redis.replicate_commands() end

-- This server's role, its replication id and the addresses of its online replicas, sorted.
local function replication()
  local info = redis.call('INFO', 'replication')
  local role = string.match(info, 'role:(%a+)')
  local replid = string.match(info, 'master_replid:(%x+)') or ''
  local online = {}
  for ip, port in string.gmatch(info, 'slave%d+:ip=([^,]*),port=(%d+),state=online') do
    online[#online + 1] = ip .. ':' .. port
  end
  table.sort(online)
  return role, replid, online
end

local function words(text)
  local found = {}
  for word in string.gmatch(text, '%S+') do found[#found + 1] = word end
  return found
end

-- nil when the script may go on; else the error reply the script must return before writing anything.
local function fenced(prefix)
  local role, replid, online = replication()
  if role ~= 'master' then return nil end  -- a replica refuses the writes themselves (READONLY)
  local record = prefix .. '__replicas'
  local now = table.concat({replid, unpack(online)}, ' ')
  local recorded = redis.call('GET', record)
  if recorded == now then return nil end
  if recorded then
    local was = words(recorded)
    if was[1] == replid then
      local present = {}
      for _, address in ipairs(online) do present[address] = true end
      local missing = {}
      for i = 2, #was do
        if not present[was[i]] then missing[#missing + 1] = was[i] end
      end
      if #missing > 0 then
        local run_id = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or '?'
        return redis.error_reply('FENCED ' .. run_id .. ' ' .. table.concat(missing, ' '))
      end
    end
  end
  redis.call('SET', record, now)
  return nil
end
