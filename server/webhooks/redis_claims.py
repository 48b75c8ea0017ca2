"""Claims in Redis, shared by every process: one Lua script per step, so one caller wins.

Keys share the hash tag `{<prefix>:webhooks}` (one Redis Cluster slot, as the scripts need):
- `...:on:<kind>`, a hash of the keys present somewhere (the state an event last announced);
- `...:n:<kind>:<key>`, a sorted set of the processes holding the key, scored by expiry (ms):
  a process renews its keys every third of `[redis] presence_ttl_s`, so a dead process's
  entries lapse by themselves;
- `...:due:<kind>`, a sorted set of keys to look at, scored by when: the debounce after the last
  process let go, or when the last entry would lapse;
- `...:seq`, the sequence, never below Redis's clock in microseconds (it survives a flush).
"""

from __future__ import annotations

from typing import Any

import redis.asyncio

from server.broker.redis_conn import ERRORS, unavailable
from server.webhooks.claims import Changes, Claims

#: A Redis client, of a single server or a cluster (`[redis] cluster`).
RedisClient = redis.asyncio.Redis | redis.asyncio.RedisCluster

_HEAD = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local base, kind = KEYS[1], ARGV[1]
local on, due = base .. ':on:' .. kind, base .. ':due:' .. kind
local function held(key) return base .. ':n:' .. kind .. ':' .. key end
local function next_seq()
  local s = redis.call('INCR', base .. ':seq')
  local us = t[1] * 1000000 + t[2]
  if s < us then
    s = us
    redis.call('SET', base .. ':seq', string.format('%.0f', s))
  end
  return string.format('%.0f', s)
end
"""

# ARGV: kind, node, ttl ms, debounce ms, keys... Returns key, seq pairs of new appearances.
APPEAR = (
    _HEAD
    + """
local node, ttl, debounce = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {}
for i = 5, #ARGV do
  local key = ARGV[i]
  redis.call('ZADD', held(key), now + ttl, node)
  redis.call('PEXPIRE', held(key), 2 * ttl + debounce)
  redis.call('ZADD', due, now + ttl + debounce, key)
  if redis.call('HSETNX', on, key, '1') == 1 then
    out[#out + 1] = key
    out[#out + 1] = next_seq()
  end
end
return out
"""
)

# ARGV: kind, node, debounce ms, keys...
VANISH = (
    _HEAD
    + """
local node, debounce = ARGV[2], tonumber(ARGV[3])
for i = 4, #ARGV do
  local key = ARGV[i]
  redis.call('ZREM', held(key), node)
  redis.call('ZREMRANGEBYSCORE', held(key), '-inf', now)
  if redis.call('ZCARD', held(key)) == 0 then
    redis.call('ZADD', due, now + debounce, key)
  end
end
"""
)

# ARGV: kind, debounce ms, limit. Returns how many keys it looked at, then key, seq pairs of
# keys gone from everywhere.
SWEEP = (
    _HEAD
    + """
local debounce, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local keys = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, limit)
local out = {#keys}
for _, key in ipairs(keys) do
  redis.call('ZREMRANGEBYSCORE', held(key), '-inf', now)
  local last = redis.call('ZRANGE', held(key), -1, -1, 'WITHSCORES')
  if #last == 0 then
    redis.call('ZREM', due, key)
    redis.call('DEL', held(key))
    if redis.call('HDEL', on, key) == 1 then
      out[#out + 1] = key
      out[#out + 1] = next_seq()
    end
  else
    redis.call('ZADD', due, tonumber(last[2]) + debounce, key)
  end
end
return out
"""
)

#: Keys per script call, so no call blocks Redis for long.
CHUNK = 500


class RedisClaims(Claims):
    renews = True

    def __init__(
        self,
        client: RedisClient,
        prefix: str,
        node_id: str,
        ttl_s: float,
        debounce_s: float,
    ) -> None:
        self._client = client
        self._base = f"{{{prefix}:webhooks}}"
        self._node = node_id
        self._ttl_ms = int(ttl_s * 1000)
        self._debounce_ms = int(debounce_s * 1000)

    async def _eval(self, script: str, *args: str | int) -> Any:
        try:
            return await self._client.eval(script, 1, self._base, *args)
        except ERRORS as exc:
            raise unavailable(exc) from None

    async def appear(self, kind: str, keys: list[str]) -> Changes:
        changes: Changes = []
        for i in range(0, len(keys), CHUNK):
            flat = await self._eval(
                APPEAR, kind, self._node, self._ttl_ms, self._debounce_ms, *keys[i : i + CHUNK]
            )
            changes += _pairs(flat)
        return changes

    async def vanish(self, kind: str, keys: list[str]) -> None:
        for i in range(0, len(keys), CHUNK):
            await self._eval(VANISH, kind, self._node, self._debounce_ms, *keys[i : i + CHUNK])

    async def sweep(self, kind: str) -> Changes:
        changes: Changes = []
        while True:
            flat = await self._eval(SWEEP, kind, self._debounce_ms, CHUNK)
            changes += _pairs(flat[1:])
            if int(flat[0]) < CHUNK:
                return changes


def _pairs(flat: list[bytes]) -> Changes:
    return [(flat[i].decode(), int(flat[i + 1])) for i in range(0, len(flat), 2)]
