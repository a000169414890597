-- A library, not a script: scripts.py puts it (after history.lua) in front of the ondemand_*.lua scripts,
-- which keep the on-demand requests of API v3 in the original vmpooler's keys and shapes (contract B3), so
-- that either implementation can take over the other's requests:
--
--   <prefix>__provisioning__request     zset id -> submit epoch: new requests, not yet taken in
--   <prefix>__provisioning__processing  zset id -> submit epoch: requests being filled
--   <prefix>__odcreate__task            zset "<alias>:<pool>:<count>:<id>" -> submit epoch: clones to start
--   <prefix>__odrequest__<id>           hash: requested ("<alias>:<pool>:<count>,..."), status (ready,
--                                       failed, deleted; unset while being filled), token:token,
--                                       token:user, retry_count, failure_reason
--   <prefix>__<id>__<alias>__<pool>     set: the VMs delivered (running, checked out to the request)
--   <prefix>__vm__<host>                request_id and pool_alias mark a VM cloned for a request
--
-- The invariant every script keeps, in one atomic step each: for each (alias, pool) of an open request,
-- the clones in its task + its pending VMs + its delivered VMs = the count asked for. So no crash can
-- lose a request's VM or leave it short: a lost clone is put back in the task (od_lost).

local OD_NEW, OD_PROCESSING, OD_TASKS = '__provisioning__request', '__provisioning__processing', '__odcreate__task'

local function od_key(prefix, kind, name) return prefix .. '__' .. kind .. '__' .. name end
local function od_request_key(prefix, id) return prefix .. '__odrequest__' .. id end
local function od_vms_key(prefix, id, alias, pool) return prefix .. '__' .. id .. '__' .. alias .. '__' .. pool end

-- "alias:pool:n,..." -> {{alias, pool, n}, ...}
local function od_triples(requested)
  local found = {}
  for alias, pool, n in string.gmatch(requested or '', '([^:,]+):([^:,]+):(%d+)') do
    found[#found + 1] = {alias, pool, tonumber(n)}
  end
  return found
end

-- 'open' while the request is being filled; else its status (ready, failed, deleted), or 'gone'.
local function od_state(prefix, id)
  local fields = redis.call('HMGET', od_request_key(prefix, id), 'requested', 'status')
  if not fields[1] then return 'gone' end
  if fields[2] and fields[2] ~= '' then return fields[2] end
  return 'open'
end

-- The clone task of (alias, pool, id): its member, count and score; nil when there is none. A scan of the
-- task zset, which holds one member per (alias, pool) of the open requests: small.
local function od_task(prefix, alias, pool, id)
  local head, tail = alias .. ':' .. pool .. ':', ':' .. id
  local flat = redis.call('ZRANGE', prefix .. OD_TASKS, 0, -1, 'WITHSCORES')
  for i = 1, #flat, 2 do
    local member = flat[i]
    if #member > #head + #tail and string.sub(member, 1, #head) == head and string.sub(member, -#tail) == tail then
      local n = tonumber(string.sub(member, #head + 1, #member - #tail))
      if n then return member, n, flat[i + 1] end
    end
  end
  return nil
end

-- Add `delta` (negative to take) to the task's count; at 0 the task is gone. Returns the new count.
local function od_task_add(prefix, alias, pool, id, delta, score)
  local member, n, was = od_task(prefix, alias, pool, id)
  n = (n or 0) + delta
  if member then redis.call('ZREM', prefix .. OD_TASKS, member) end
  if n > 0 then
    redis.call('ZADD', prefix .. OD_TASKS, was or score, alias .. ':' .. pool .. ':' .. n .. ':' .. id)
  end
  return n
end

-- Whether every (alias, pool) of the request has its count delivered.
local function od_filled(prefix, id, triples)
  for _, t in ipairs(triples) do
    if redis.call('SCARD', od_vms_key(prefix, id, t[1], t[2])) < t[3] then return false end
  end
  return true
end

-- A delivered VM goes back: running -> completed (the manager destroys it), out of its token's held set.
local function od_release(prefix, pool, host, entry)
  if redis.call('SMOVE', od_key(prefix, 'running', pool), od_key(prefix, 'completed', pool), host) == 0 then
    return
  end
  redis.call('HDEL', od_key(prefix, 'active', pool), host)
  local owner = redis.call('HGET', od_key(prefix, 'vm', host), 'token:token')
  if owner and owner ~= '' then redis.call('SREM', od_key(prefix, 'held', owner), host) end
  history(prefix, host, entry)
end

-- Close a request with `status`: out of the queues, its clone tasks dropped, its hash (and, when ready,
-- its sets) expiring after `ttl` seconds. Unless it is ready, the VMs delivered so far are released and
-- their sets deleted. (Its VMs still pending are dealt with as they become ready or time out.)
local function od_close(prefix, id, status, ttl, entry, reason)
  local request = od_request_key(prefix, id)
  redis.call('HSET', request, 'status', status)
  if reason and reason ~= '' then redis.call('HSET', request, 'failure_reason', reason) end
  redis.call('ZREM', prefix .. OD_NEW, id)
  redis.call('ZREM', prefix .. OD_PROCESSING, id)
  for _, t in ipairs(od_triples(redis.call('HGET', request, 'requested'))) do
    local member = od_task(prefix, t[1], t[2], id)
    if member then redis.call('ZREM', prefix .. OD_TASKS, member) end
    local set = od_vms_key(prefix, id, t[1], t[2])
    if status == 'ready' then
      redis.call('EXPIRE', set, ttl)
    else
      for _, host in ipairs(redis.call('SMEMBERS', set)) do od_release(prefix, t[2], host, entry) end
      redis.call('DEL', set)
    end
  end
  redis.call('EXPIRE', request, ttl)
end

-- A pending VM of request `id` is lost (its clone failed or died, or it never booted): while the request
-- is open its clone goes back into the task; a failure (`retry`, not a dead manager's clone) counts against
-- the request's retries, and past `max` the request fails. Returns 0 (request closed: nothing to redo),
-- 1 (clone put back) or 2 (the request failed).
local function od_lost(prefix, id, alias, pool, retry, max, ttl, entry, reason)
  if od_state(prefix, id) ~= 'open' then return 0 end
  if retry then
    -- (HGET and HSET rather than HINCRBY: no command beyond the least ACL of the README)
    local tries = (tonumber(redis.call('HGET', od_request_key(prefix, id), 'retry_count')) or 0) + 1
    redis.call('HSET', od_request_key(prefix, id), 'retry_count', tries)
    if tries > max then
      od_close(prefix, id, 'failed', ttl, entry, reason)
      return 2
    end
  end
  local score = redis.call('ZSCORE', prefix .. OD_PROCESSING, id) or redis.call('ZSCORE', prefix .. OD_NEW, id) or 0
  od_task_add(prefix, alias, pool, id, 1, score)
  return 1
end
