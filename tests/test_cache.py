"""The shared cache's backend: Django's Redis cache, keeping one client per connection pool."""

from __future__ import annotations

from django.conf import settings

from reviewplatform.cache import ReusedClientRedisCache


def test_it_keeps_one_client_and_caches_as_django_does():
    cache = ReusedClientRedisCache(settings.REDIS_URL, {"KEY_PREFIX": "test-cache"})
    cache.delete_many(["a", "n"])

    cache.set("a", {"x": 1})
    assert cache.get("a") == {"x": 1}
    assert cache.get_many(["a", "b"]) == {"a": {"x": 1}}
    assert cache.add("n", 1) and not cache.add("n", 2)
    assert cache.incr("n") == 2
    client = cache._cache.get_client(write=True)
    assert cache._cache.get_client() is client
    cache.delete_many(["a", "n"])
