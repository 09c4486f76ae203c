"""One Redis client object per connection pool, reused.

redis-py builds a table of a few hundred response callbacks each time a client object is
made: about 0.7 ms of CPU here. Django's Redis cache makes a new client for every operation,
and kombu's Redis transport one for every publish: two per order on the request path, more
than the round trips they carry. A client is safe to share between threads (each command
takes a connection from the pool), so these keep one per pool.

`RedisCache` is the cache backend (settings.CACHES); `Transport` the Celery broker transport
for `redis://` URLs (settings.CELERY_BROKER_TRANSPORT).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.cache.backends import redis as django_redis
from kombu.transport import redis as kombu_redis


class _CacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients_by_pool: dict[Any, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients_by_pool.get(pool)
        if client is None:
            client = self._clients_by_pool[pool] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _CacheClient

    def raw(self, key: str) -> tuple[Any, str]:
        """The redis-py client that holds `key` (for writes) and the key as the cache stores
        it: for several commands in one round trip (a pipeline or a script)."""
        stored = self.make_and_validate_key(key)
        return self._cache.get_client(stored, write=True), stored


class Channel(kombu_redis.Channel):
    _reused: tuple[Any, Any] | None = None  # (pool, client)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        pool = self.pool
        reused = self._reused
        if reused is None or reused[0] is not pool:
            reused = self._reused = (pool, self._create_client())
        yield reused[1]


class Transport(kombu_redis.Transport):
    Channel = Channel
