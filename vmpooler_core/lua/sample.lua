#!lua
-- One sample of each pool a manager holds, for the dashboard's history (samples.py): its ready, pending
-- and running VMs counted here, at one instant; its size (and target, when it has one) as the manager
-- runs it; and the checkouts and refusals checkout.lua tallied since the pool's last sample, taken out of
-- the tally in the same step, so that none is counted twice or lost.
--
-- ARGV[1] prefix   ARGV[2] the minute (epoch seconds / 60) the samples are for: "" for now on Redis's
-- clock, so that managers on hosts whose clocks disagree still write one sample a minute between them
-- ARGV[3] samples kept per pool   ARGV[4] seconds a pool's samples outlive its last one
-- then per pool: its name, size and target ("" = none)
--
-- A pool already sampled for this minute (by another manager, just before the pool's lease moved) is
-- left alone. Returns {Redis's clock (epoch seconds, as a string), pools sampled}.
local prefix = ARGV[1]
local now = redis.call('TIME')
local minute = tonumber(ARGV[2]) or math.floor(tonumber(now[1]) / 60)
local keep, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local tally = prefix .. '__tally'
local sampled = 0
for i = 5, #ARGV, 3 do
  local pool, size, target = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = prefix .. '__samples__' .. pool
  local last = redis.call('LRANGE', key, -1, -1)[1]
  if not last or tonumber(string.match(last, '^%d+')) < minute then
    local taken = redis.call('HMGET', tally, 'checkout:' .. pool, 'refused:' .. pool)
    if taken[1] or taken[2] then redis.call('HDEL', tally, 'checkout:' .. pool, 'refused:' .. pool) end
    local entry = {minute,
                   redis.call('SCARD', prefix .. '__ready__' .. pool),
                   redis.call('SCARD', prefix .. '__pending__' .. pool),
                   redis.call('SCARD', prefix .. '__running__' .. pool),
                   size, taken[1] or 0, taken[2] or 0}
    if target ~= '' then entry[#entry + 1] = target end
    redis.call('RPUSH', key, table.concat(entry, ' '))
    redis.call('LTRIM', key, -keep, -1)
    redis.call('EXPIRE', key, ttl)
    sampled = sampled + 1
  end
end
return {now[1] .. '.' .. string.format('%06d', tonumber(now[2])), sampled}
