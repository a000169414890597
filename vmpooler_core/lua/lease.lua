#!lua
-- Per-pool leases: each pool is worked by one manager at a time. A lease is a string holding the
-- manager's id, with an expiry, so a manager that dies loses its pools within that time.
--
-- ARGV[1] prefix  ARGV[2] manager id  ARGV[3] mode  ARGV[4] lease milliseconds  ARGV[5..] pools
--   mode "acquire": take each free lease, renew each of ours
--   mode "renew":   renew each of ours only (a lost lease stays lost)
--   mode "release": drop each of ours (a clean stop hands the pools over at once)
--
-- Returns, per pool, 1 when the manager holds the lease after the call, else 0. Compare-and-set inside
-- the script: a manager never extends or drops a lease another one has taken meanwhile.
local prefix, owner, mode, ms = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local held = {}
for p = 5, #ARGV do
  local lease = prefix .. '__lease__' .. ARGV[p]
  local current = redis.call('GET', lease)
  local mine = 0
  if mode == 'release' then
    if current == owner then redis.call('DEL', lease) end
  elseif current == owner then
    redis.call('PEXPIRE', lease, ms)
    mine = 1
  elseif not current and mode == 'acquire' then
    redis.call('SET', lease, owner, 'PX', ms)
    mine = 1
  end
  held[#held + 1] = mine
end
return held
