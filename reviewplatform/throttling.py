"""Throttling of the API per API key, on the shared cache (Redis in production).

A client's keys are counted apart, so that one busy integration does not starve another; a
logged-in session counts per user. Over the rate, DRF answers 429 with `Retry-After`.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from .cache import UNREACHABLE, ReusedClientRedisCache
from .models import ApiKey

# The sliding window on Redis, in one round trip: the key's requests as a sorted set scored by
# their time. Drop those older than the window; under the rate, add this one and answer 1;
# over it, answer 0 with the count and the oldest request's time (for Retry-After).
_WINDOW_SCRIPT = """
local key, now, duration, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - duration)
local count = redis.call('ZCARD', key)
if count >= limit then
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  return {0, count, oldest[2]}
end
redis.call('ZADD', key, now, ARGV[4])
redis.call('PEXPIRE', key, math.ceil(duration * 1000))
return {1, count + 1, ARGV[1]}
"""
_scripts: dict[int, Any] = {}


class ApiKeyRateThrottle(SimpleRateThrottle):
    """At most API_THROTTLE_RATE requests per key in a sliding window.

    On Redis the window is a sorted set that one script reads and updates atomically: a
    request costs one round trip, whatever the rate. On another cache (the tests' own per
    process) DRF's history list is read and written back without a lock, so concurrent
    requests with one key may pass a few over the rate there.
    """

    scope = "api_key"

    def get_rate(self) -> str:
        # Read on each request (not once at import), so that a test may lower it.
        return str(settings.API_THROTTLE_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.prefix}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request: Request, view: Any) -> bool:
        backend = caches["default"]
        if not isinstance(backend, RedisCache):
            return super().allow_request(request, view)
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        limit, duration = self.parse_rate(self.rate)
        if limit is None or duration is None:
            return True
        key = backend.make_and_validate_key(self.key)
        client = backend._cache.get_client(key, write=True)
        script = _scripts.get(id(client))
        if script is None:
            script = _scripts[id(client)] = client.register_script(_WINDOW_SCRIPT)
        self.now = self.timer()
        try:
            allowed, count, oldest = script(keys=[key], args=[
                repr(self.now), duration, limit, uuid.uuid4().hex])
        except UNREACHABLE as exc:
            # As the cache answers while Redis is down: the API keeps answering, unthrottled.
            if isinstance(backend, ReusedClientRedisCache):
                backend._unreachable(exc, "the throttle")
            return True
        if allowed:
            return True
        # What DRF's `wait` reads: the history's length and its oldest time.
        self.history = [float(oldest)] * int(count)
        return False
