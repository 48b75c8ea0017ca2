"""The broker's Lua scripts under Redis Cluster: a channel's position is fenced by its writer.

Redis replicates asynchronously. When a primary dies, its replica takes over with what it had
received, so a channel's position there may lag behind offsets the dead primary had already
handed out and published; continuing from it would give a new publication an offset that
subscribers already hold for another. So each position records the node id (CLUSTER MYID) of
the primary that wrote it, and a position found on any other node (a promoted replica, or the
target of a resharding) counts as absent: the node seeds the channel again from the store, past
every offset the old primary may have handed out (the unstored window), as after Redis lost its
data. A resharding therefore costs each moved channel one reseed (with history: up to a window
of offsets made void; without: a new epoch).

Only the position key is declared; the pub/sub channel (same hash tag, same slot) travels in
ARGV, so a script is never refused with TRYAGAIN while its slot migrates.
"""

from __future__ import annotations

# The part of a publish after the channel's position `h` (epoch, offset, stored) was read and
# found usable, shared with redis.PUBLISH. ARGV: channel, publish command, window, ttl in ms,
# then the bodies. Numbers as many of the bodies as the unstored window allows (channels with
# history: at most `window` offsets beyond what the store holds) and publishes them in order.
# Returns {first offset, epoch, how many}; {-1, epoch} when none fits the window.
SEQUENCE = """
local n = #ARGV - 4
if h[3] then
  local room = tonumber(h[3]) + tonumber(ARGV[3]) - tonumber(h[2])
  if room <= 0 then return {-1, epoch} end
  if room < n then n = room end
end
local last = redis.call('HINCRBY', KEYS[1], 'offset', n)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local first = last - n + 1
for i = 1, n do
  redis.call(ARGV[2], ARGV[1], (first + i - 1) .. ':' .. epoch .. ':' .. ARGV[4 + i])
end
return {first, epoch, n}
"""

# KEYS: position. ARGV: as SEQUENCE. Replies as redis.PUBLISH.
PUBLISH = (
    """
local h = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'stored', 'node')
local epoch = h[1]
if not epoch or h[4] ~= redis.call('CLUSTER', 'MYID') then return false end
"""
    + SEQUENCE
)

# KEYS: position. ARGV: offset, epoch, stored (empty: no history), ttl in ms. 1 when this call
# set it.
SEED = """
local me = redis.call('CLUSTER', 'MYID')
if redis.call('HGET', KEYS[1], 'node') == me then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'offset', ARGV[1], 'epoch', ARGV[2], 'node', me)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'stored', ARGV[3]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# KEYS: position. Replies {offset, epoch}, or nil when absent or written by another node.
POSITION = """
local h = redis.call('HMGET', KEYS[1], 'offset', 'epoch', 'node')
if not h[2] or h[3] ~= redis.call('CLUSTER', 'MYID') then return false end
return {h[1], h[2]}
"""
