#!lua
-- Count one request against its rate-limit bucket (the GCRA of gcra.lua, put in front of this file),
-- for the requests whose own work is not a script that does it (checkout.lua and return.lua do).
--
-- ARGV[1] prefix   ARGV[2..8] the rate-limit arguments described in gcra.lua
--
-- Returns {"ok"} | {"ratelimited", limit, period ms, retry-after ms, full-again epoch ms}
return rate_limit(ARGV[1], 2) or {'ok'}
