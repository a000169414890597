-- A library, not a script: scripts.py puts it in front of the scripts that rate-limit requests
-- (ratelimit.lua, checkout.lua, return.lua), so a limited request costs no extra round trip.
--
-- GCRA (the generic cell rate algorithm): a bucket allows `limit` requests per `period`, spread
-- evenly, with bursts of up to `limit`. Unlike a fixed window, a burst at a window's edge cannot double
-- the rate. Each bucket is one string, its theoretical arrival time (TAT, epoch ms), that expires when
-- the bucket is full again, so idle clients cost nothing. Time is Redis's own (TIME): API processes with
-- skewed clocks share one view.
--
-- rate_limit(prefix, at) reads ARGV[at .. at + 6]:
--   token ("" = none), token limit, token period (ms), token bucket key,
--   address limit, address period (ms), address bucket key
-- A request with a token that exists counts against the token's bucket, any other against its
-- address's (so made-up tokens cannot buy fresh buckets). A limit of 0, or no arguments, never limits.
-- Returns nil when the request may go ahead (it is counted), or, when it may not (nothing counted),
-- {'ratelimited', limit, period ms, retry-after ms, epoch ms when the bucket is full again}.

-- Redis < 5 replicates scripts verbatim unless told otherwise, and a script that reads TIME and then
-- writes must be replicated by its effects. (A no-op from Redis 7 on.)
if redis.replicate_commands then redis.replicate_commands() end

-- Float sums of the interval drift by far less than this (ms) over a burst; without it the last
-- request of an exact burst could be refused.
local GCRA_SLACK = 1

local function gcra(prefix, at)
  local token = ARGV[at]
  local limit, period, bucket
  if token ~= '' and redis.call('EXISTS', prefix .. '__token__' .. token) == 1 then
    limit, period, bucket = tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), ARGV[at + 3]
  else
    limit, period, bucket = tonumber(ARGV[at + 4]), tonumber(ARGV[at + 5]), ARGV[at + 6]
  end
  if not limit or limit <= 0 then return nil end
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
  -- A bucket key holding anything else (another program's counter) is started afresh, not an error.
  local tat = tonumber(redis.pcall('GET', bucket)) or now
  if tat < now then tat = now end
  local next_tat = tat + period / limit
  if next_tat - now > period + GCRA_SLACK then
    return {'ratelimited', limit, period, math.ceil(next_tat - now - period), math.ceil(tat)}
  end
  -- (An interval below the clock's resolution, some 0.0002 ms at today's epoch, adds nothing: such a
  -- limit, millions a second, never limits. The expiry must still be at least 1 ms.)
  redis.call('SET', bucket, string.format('%.17g', next_tat), 'PX', math.max(1, math.ceil(next_tat - now)))
  return nil
end

local function rate_limit(prefix, at)
  if ARGV[at] == nil or ARGV[at + 6] == nil then return nil end
  -- The limiter must never be why a checkout fails: on any error here the request goes ahead, and
  -- Redis's own log says why.
  local ok, result = pcall(gcra, prefix, at)
  if ok then return result end
  redis.log(redis.LOG_WARNING, 'vmpooler rate limiter failed, request let through: ' .. tostring(result))
  return nil
end
