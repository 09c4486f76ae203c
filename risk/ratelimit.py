"""Orders per minute, counted in Redis so the limit holds across every web process.

A sliding window of exactly 60 s per key (a sorted set of admission times, trimmed and
checked atomically in one Lua script, timed by the Redis server's clock so that processes
with skewed clocks agree). A refused attempt is not counted, and an admitted one can be
uncounted (`release`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

WINDOW_SECONDS = 60

# KEYS: one sorted set per bucket. ARGV: a unique member, then each bucket's limit.
# Answers 0 when admitted (and records the attempt in every bucket), else the number of
# milliseconds until the fullest bucket has room again.
_SCRIPT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = 60000
local wait_ms = 0
for i, key in ipairs(KEYS) do
    local limit = tonumber(ARGV[i + 1])
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window_ms)
    if redis.call('ZCARD', key) >= limit then
        local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
        local wait = tonumber(oldest[2]) + window_ms - now_ms
        if wait > wait_ms then wait_ms = wait end
        if wait_ms < 1 then wait_ms = 1 end
    end
end
if wait_ms > 0 then return wait_ms end
for i, key in ipairs(KEYS) do
    redis.call('ZADD', key, now_ms, ARGV[1])
    redis.call('PEXPIRE', key, window_ms)
end
return 0
"""


@dataclass(frozen=True)
class Bucket:
    key: str
    per_minute: int


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)


@cache
def _script():  # type: ignore[no-untyped-def]
    return _client().register_script(_SCRIPT)


def admit(buckets: list[Bucket], member: str | None = None) -> float:
    """Count one order (`member`: its unique mark, for `release`) against every bucket, or
    none. Answers 0 when admitted, else the seconds to wait. Raises redis.RedisError when
    Redis cannot be reached."""
    if not buckets:
        return 0.0
    wait_ms = _script()(
        keys=[bucket.key for bucket in buckets],
        args=[member or uuid.uuid4().hex, *[bucket.per_minute for bucket in buckets]],
    )
    return int(wait_ms) / 1000


def release(buckets: list[Bucket], member: str) -> None:
    """Uncount an admitted order (it turned out to be a repeat, not a new order)."""
    with _client().pipeline(transaction=False) as pipe:
        for bucket in buckets:
            pipe.zrem(bucket.key, member)
        pipe.execute()


def reset_clients() -> None:
    _client.cache_clear()
    _script.cache_clear()
