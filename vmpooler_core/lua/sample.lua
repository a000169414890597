#!lua
-- One sample of each pool a manager holds, for the dashboard's history (pool_history.py): its ready,
-- pending and running VMs counted here, at one instant; its size (and target, when it has one) as the
-- manager runs it; and the checkouts and refusals checkout.lua tallied since the pool's last sample, taken
-- out of the tally in the same step, so that none is counted twice or lost.
--
-- Beside the minutes, each pool has coarser series (the rollups: 2 and 8 minutes a sample), so that a
-- reader drawing a day reads 180 samples a pool, not 1,440: once a pool's sample falls in a later span
-- than the one before it, that span is complete, and its samples (among the last few) are combined into
-- one: the lowest ready, the highest pending and running, the last size and target, the checkouts and
-- refusals added up (pool_history.combine does the same for the span not yet complete).
--
-- ARGV[1] prefix   ARGV[2] the minute (epoch seconds / 60) the samples are for: "" for now on Redis's
-- clock, so that managers on hosts whose clocks disagree still write one sample a minute between them
-- ARGV[3] minutes kept   ARGV[4] seconds a pool's samples outlive its last one
-- ARGV[5] the rollups' minutes, space-separated
-- then per pool: its name, size and target ("" = none)
--
-- A pool already sampled for this minute (by another manager, just before the pool's lease moved) is
-- left alone. Returns {Redis's clock (epoch seconds, as a string), pools sampled}.
local prefix = ARGV[1]
local now = redis.call('TIME')
local minute = tonumber(ARGV[2]) or math.floor(tonumber(now[1]) / 60)
local keep, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local rollups = {}
for word in string.gmatch(ARGV[5], '%d+') do rollups[#rollups + 1] = tonumber(word) end
local tally = prefix .. '__tally'

local function numbers(raw)
  local found = {}
  for word in string.gmatch(raw, '%S+') do found[#found + 1] = tonumber(word) end
  return found
end

local function combine(into, f)
  if not into then return {f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8]} end
  into[2], into[3], into[4] = math.min(into[2], f[2]), math.max(into[3], f[3]), math.max(into[4], f[4])
  into[5], into[6], into[7], into[8] = f[5], into[6] + f[6], into[7] + f[7], f[8]
  return into
end

local function entry(f)
  local words = {f[1], f[2], f[3], f[4], f[5], f[6], f[7]}
  if f[8] then words[8] = f[8] end
  return table.concat(words, ' ')
end

local function append(key, text, most)
  redis.call('RPUSH', key, text)
  redis.call('LTRIM', key, -most, -1)
  redis.call('EXPIRE', key, ttl)
end

-- The spans the pool's previous sample (at minute `last`) closed, now that one comes at `minute`.
local function roll(pool, key, last)
  for _, span in ipairs(rollups) do
    local start = last - last % span
    if start < minute - minute % span then
      local into = nil
      for _, raw in ipairs(redis.call('LRANGE', key, -span, -1)) do
        local f = numbers(raw)
        if f[1] and f[1] >= start and #f >= 7 then into = combine(into, f) end
      end
      if into then
        into[1] = start
        append(prefix .. '__samples' .. span .. 'm__' .. pool, entry(into), math.floor(keep / span))
      end
    end
  end
end

local sampled = 0
for i = 6, #ARGV, 3 do
  local pool, size, target = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = prefix .. '__samples__' .. pool
  local before = redis.call('LRANGE', key, -1, -1)[1]
  local last = before and tonumber(string.match(before, '^%d+'))
  if not last or last < minute then
    if last then roll(pool, key, last) end
    local taken = redis.call('HMGET', tally, 'checkout:' .. pool, 'refused:' .. pool)
    if taken[1] or taken[2] then redis.call('HDEL', tally, 'checkout:' .. pool, 'refused:' .. pool) end
    append(key, entry({minute, redis.call('SCARD', prefix .. '__ready__' .. pool),
                       redis.call('SCARD', prefix .. '__pending__' .. pool),
                       redis.call('SCARD', prefix .. '__running__' .. pool),
                       tonumber(size), tonumber(taken[1] or 0), tonumber(taken[2] or 0), tonumber(target)}), keep)
    sampled = sampled + 1
  end
end
return {now[1] .. '.' .. string.format('%06d', tonumber(now[2])), sampled}
