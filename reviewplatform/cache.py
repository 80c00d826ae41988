"""The shared cache's backend: Django's Redis cache, with one Redis client per connection pool,
that answers as an empty cache while Redis cannot be reached.

Django's client makes a `redis.Redis` for each operation, and making one (its table of
response callbacks) costs more than the command it sends on a local Redis; an API request
makes several (its key, its throttle's window, the prediction job's marker). A client is a
thin, thread-safe handle on its pool, so one is kept per pool.

Nothing the platform keeps in the cache is the truth (API keys read from the database, the
throttle's counts, figures computed again, "asked already" flags): while Redis is down or
restarting, reads miss, writes are dropped and `add` adds nothing, so that the API keeps
answering from the database (unthrottled) instead of failing. `incr` still raises: its caller
says what a count it could not bump means (the API keys' generation: `api_keys_forget`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
WARN_EVERY_SECONDS = 10.0


class ReusedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # Django's own attributes, which its stubs leave out.
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(  # type: ignore[attr-defined]
                connection_pool=pool)
        return client


class ReusedClientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
        self._warned_at = 0.0

    def _unreachable(self, exc: Exception, operation: str) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning("the cache (Redis) cannot be reached; %s answers as a miss: %s",
                           operation, exc)

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "get")
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        try:
            return super().get_many(keys, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "get_many")
            return {}

    def has_key(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().has_key(key, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "has_key")
            return False

    def add(self, key: Any, value: Any, timeout: Any = 300, version: int | None = None
            ) -> bool:
        try:
            return super().add(key, value, timeout, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "add")
            return False

    def set(self, key: Any, value: Any, timeout: Any = 300, version: int | None = None
            ) -> None:
        try:
            super().set(key, value, timeout, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "set")

    def set_many(self, data: dict[Any, Any], timeout: Any = 300, version: int | None = None
                 ) -> list[Any]:
        try:
            return super().set_many(data, timeout, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "set_many")
            return list(data)

    def touch(self, key: Any, timeout: Any = 300, version: int | None = None) -> bool:
        try:
            return super().touch(key, timeout, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "touch")
            return False

    def delete(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().delete(key, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "delete")
            return False

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        try:
            super().delete_many(keys, version)
        except UNREACHABLE as exc:
            self._unreachable(exc, "delete_many")
