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


def test_it_answers_as_an_empty_cache_while_redis_cannot_be_reached(caplog):
    import socket
    import time

    import pytest
    from redis.exceptions import ConnectionError as RedisConnectionError

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cache = ReusedClientRedisCache(f"redis://127.0.0.1:{port}/0",
                                   {"OPTIONS": {"socket_connect_timeout": 1}})
    started = time.monotonic()

    cache.set("a", 1)
    assert cache.get("a", "missing") == "missing"
    assert cache.get_many(["a", "b"]) == {}
    assert cache.add("a", 1) is False
    assert cache.get_or_set("a", lambda: 3) == 3
    assert cache.has_key("a") is False
    assert cache.delete("a") is False
    cache.delete_many(["a"])
    assert cache.set_many({"a": 1}) == ["a"]
    with pytest.raises(RedisConnectionError):
        cache.incr("n")  # its caller says what a missed bump means (`api_keys_forget`)
    assert time.monotonic() - started < 5
    warnings = [r for r in caplog.records if "cannot be reached" in r.getMessage()]
    assert len(warnings) == 1  # said once, not at every call


def test_the_api_takes_a_case_while_the_shared_cache_is_down(api, deployment, make_upload,
                                                             redis_unreachable):
    """The API key read from the database, the throttle unthrottled: no 500."""
    from django.core.cache import caches

    from .conftest import CAPTURED_AT

    assert isinstance(caches["default"], ReusedClientRedisCache)

    response = api.post("/api/v1/cases/", {
        "deployment": "digits", "region": "north", "external_id": "cache-down",
        "captured_at": CAPTURED_AT.isoformat(), "image": make_upload()}, format="multipart")

    assert response.status_code == 201, response.content
