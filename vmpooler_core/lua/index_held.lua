#!lua
-- A manager at its start: every running VM checked out with a token into its token's held set (see
-- held_sets.lua), again: the original may have handed VMs out since the sets were last made complete.
--
-- ARGV[1]  prefix    ARGV[2..]  the manager's pools (beside those of the `<prefix>__pools` set)
-- Returns 1.
local pools = {}
for i = 2, #ARGV do pools[#pools + 1] = ARGV[i] end
index_held(ARGV[1], pools)
return 1
