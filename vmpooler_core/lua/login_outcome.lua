#!lua
-- What a login attempt counted by login_attempt.lua came to, and what it saw of the directory's hosts.
--
-- ARGV[1] prefix (unused)   ARGV[2] the user name's key   ARGV[3] the client address's key
-- ARGV[4] 'accepted' | 'refused' | 'unavailable'   ARGV[5] the directory's health key
-- ARGV[6] ms the health is kept   ARGV[7..] pairs of (host, reason), reason '' when the host answered
--
-- accepted: the user's failures are forgotten, and the address's attempt is taken back (a right
--   password was no guess; the address's earlier failures stay);
-- unavailable: both attempts are taken back (nobody judged the password);
-- refused: both stay counted.
-- Each host's health is a JSON {ok, at, since, reason} (epoch seconds; `since` the first failure of
-- the current run of failures), read by directory_health.py.

if redis.replicate_commands then redis.replicate_commands() end

local function take_back(key)
  local n = tonumber(redis.call('HGET', key, 'n'))
  if n and n > 0 then redis.call('HINCRBY', key, 'n', -1) end
end

if ARGV[4] == 'accepted' then
  redis.call('DEL', ARGV[2])
  take_back(ARGV[3])
elseif ARGV[4] == 'unavailable' then
  take_back(ARGV[2])
  take_back(ARGV[3])
end

if #ARGV > 6 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
  local health = ARGV[5]
  for i = 7, #ARGV - 1, 2 do
    local host, reason = ARGV[i], ARGV[i + 1]
    if reason == '' then
      redis.call('HSET', health, host, cjson.encode({ok = true, at = now}))
    else
      local since = now
      local old = redis.call('HGET', health, host)
      if old then
        local readable, data = pcall(cjson.decode, old)
        if readable and type(data) == 'table' and data.ok == false and tonumber(data.since) then
          since = tonumber(data.since)
        end
      end
      redis.call('HSET', health, host, cjson.encode({ok = false, at = now, since = since, reason = reason}))
    end
  end
  redis.call('PEXPIRE', health, tonumber(ARGV[6]))
end
return {'ok'}
