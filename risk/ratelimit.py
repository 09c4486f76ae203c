"""Orders per minute, counted in Redis so the limit holds across every web process.

A sliding window of exactly 60 s per key (a sorted set of admission times, trimmed and
checked atomically in one Lua script, timed by the Redis server's clock so that processes
with skewed clocks agree). A refused attempt is not counted, and an admitted one can be
uncounted (`release_many`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

WINDOW_SECONDS = 60

# One script for one order and for a batch: each order counted or refused in turn, as one
# call each would. KEYS: the buckets; ARGV: each key's limit, then per order its unique member,
# whether to count it (1) or only check it (0), the number of its buckets and their indexes in
# KEYS. Answers each order's wait in milliseconds (0: admitted).
_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = 60000
local count, limits, touched = {}, {}, {}
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window_ms)
    count[i] = redis.call('ZCARD', key)
    limits[i] = tonumber(ARGV[i])
end
local waits = {}
local at = #KEYS + 1
while at <= #ARGV do
    local member, counted, n = ARGV[at], ARGV[at + 1] == '1', tonumber(ARGV[at + 2])
    local wait_ms = 0
    for j = 1, n do
        local k = tonumber(ARGV[at + 2 + j])
        if count[k] >= limits[k] then
            local oldest = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
            local wait = window_ms
            if oldest[2] then wait = tonumber(oldest[2]) + window_ms - now_ms end
            if wait > wait_ms then wait_ms = wait end
            if wait_ms < 1 then wait_ms = 1 end
        end
    end
    if wait_ms == 0 and counted then
        for j = 1, n do
            local k = tonumber(ARGV[at + 2 + j])
            redis.call('ZADD', KEYS[k], now_ms, member)
            count[k] = count[k] + 1
            touched[k] = true
        end
    end
    waits[#waits + 1] = wait_ms
    at = at + 3 + n
end
for k in pairs(touched) do redis.call('PEXPIRE', KEYS[k], window_ms) end
return waits
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    per_minute: int


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


def admit(buckets: list[Bucket], member: str | None = None) -> float:
    """Count one order (`member`: its unique mark, for `release_many`) against every bucket, or
    none. Answers 0 when admitted, else the seconds to wait. Raises redis.RedisError when
    Redis cannot be reached."""
    return admit_many([(buckets, member or uuid.uuid4().hex, True)])[0]


@cache
def _script():  # type: ignore[no-untyped-def]
    return _client().register_script(_SCRIPT)


def admit_many(orders: Sequence[tuple[Sequence[Bucket], str, bool]]) -> list[float]:
    """`admit` for many orders, each (its buckets, its unique member, whether to count it), in
    one round trip: counted or refused in turn, in order, each seeing the counts of those
    admitted before it. An order not to be counted is only checked: its wait is answered, as
    if it were counted and released at once. Answers each order's wait in seconds (0:
    admitted). Raises redis.RedisError when Redis cannot be reached (then none is counted)."""
    index: dict[str, int] = {}
    limits: list[int] = []
    body: list[str | int] = []
    for buckets, member, count in orders:
        body += [member, 1 if count else 0, len(buckets)]
        for bucket in buckets:
            at = index.get(bucket.key)
            if at is None:
                at = index[bucket.key] = len(limits) + 1
                limits.append(bucket.per_minute)
            else:  # one key, one limit; the stricter if two were ever given
                limits[at - 1] = min(limits[at - 1], bucket.per_minute)
            body.append(at)
    if not index:
        return [0.0] * len(orders)
    waits = _script()(keys=list(index), args=[*limits, *body])
    return [int(wait) / 1000 for wait in waits]


def release_many(admitted: Sequence[tuple[Sequence[Bucket], str]]) -> None:
    """Uncount admitted orders, each (its buckets, its member), in one round trip."""
    with _client().pipeline(transaction=False) as pipe:
        for buckets, member in admitted:
            for bucket in buckets:
                pipe.zrem(bucket.key, member)
        pipe.execute()


def reset_clients() -> None:
    _client.cache_clear()
    _script.cache_clear()
