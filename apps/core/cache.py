"""Django's Redis cache with one reused client per connection pool.

Django's RedisCacheClient builds a new `redis.Redis` object for every cache
operation; with redis-py 8 that construction alone costs about 0.2 ms of CPU
(it fills a table of response callbacks), more than the round trip to Redis.
The client object is thread-safe (connections come from the pool), so one
per pool is enough.
"""

from typing import Any

from django.core.cache.backends import redis as django_redis


class RedisCacheClient(django_redis.RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        index = self._get_connection_pool_index(write)
        client = self._clients.get(index)
        if client is None:
            client = self._clients[index] = self._client(connection_pool=self._get_connection_pool(write))
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient

    def incr_with_expiry(self, key: str, amount: int, timeout: int) -> int:
        """INCR and set the expiry of a new key, in one round trip (a pipeline)."""
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)
        pipe = client.pipeline(transaction=False)
        pipe.incrby(key, amount)
        pipe.expire(key, timeout, nx=True)
        count, _ = pipe.execute()
        return int(count)
