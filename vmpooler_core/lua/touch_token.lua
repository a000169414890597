#!lua
-- Use a token: when it exists, stamp its `last` field and return its user; otherwise nothing.
--
-- One script so a token revoked by another client between "does it exist" and "stamp it" is never
-- recreated as a bare {last = ...} hash (which would make a revoked token valid again).
--
-- ARGV[1] prefix   ARGV[2] token   ARGV[3] stamp (time string)
--
-- Returns the token's user ("" when the hash has none), or false when the token does not exist.
local tkey = ARGV[1] .. '__token__' .. ARGV[2]
if redis.call('EXISTS', tkey) == 0 then return false end
redis.call('HSET', tkey, 'last', ARGV[3])
return redis.call('HGET', tkey, 'user') or ''
