"""Throttling per API key: over API_THROTTLE_RATE the API answers 429 with Retry-After and
changes nothing."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from rest_framework.test import APIClient

from reviewplatform.management.commands.demo_submit import post_within_rate
from reviewplatform.models import Case
from reviewplatform.services import api_key_create
from reviewplatform.settings.envvars import env_rate
from reviewplatform.throttling import ApiKeyRateThrottle
from tests.test_settings import VALID, django_setup, failure

URL = "/api/v1/cases/"
POLICY = "/api/v1/deployments/digits/policy/"


@pytest.fixture(autouse=True)
def low_rate(settings, tmp_path) -> None:
    settings.API_THROTTLE_RATE = "2/min"
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(params=["locmem", "redis"])
def shared_cache(request, settings):
    """The tests' cache of their own, or Redis as in production (its own key prefix)."""
    if request.param == "redis":
        settings.CACHES = {"default": {
            "BACKEND": "reviewplatform.cache.ReusedClientRedisCache",
            "LOCATION": settings.REDIS_URL, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}}
    return request.param


@pytest.fixture
def clock(monkeypatch, shared_cache) -> list[float]:
    """The throttle's clock, moved by hand: now[0] seconds."""
    now = [1_000_000.0]
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", lambda self: now[0])
    return now


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def api_key_prefix(client: APIClient) -> str:
    return client._credentials["HTTP_AUTHORIZATION"].split()[1].partition(".")[0]


def client_with(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def error_text(response) -> str:
    """The human message of an error body, whichever envelope the handler writes."""
    body = response.json()
    for name in ("message", "error", "detail"):
        if isinstance(body.get(name), str):
            return body[name]
    raise AssertionError(f"no error message in {body}")


def submit(client: APIClient, make_upload, capture, number: int):
    with capture(execute=False) as callbacks:
        response = client.post(URL, {
            "deployment": "digits", "region": "north", "external_id": f"camera-7/{number}",
            "captured_at": "2026-05-01T21:30:00+02:00", "image": make_upload(),
        }, format="multipart")
    return response, callbacks


def test_it_answers_429_with_retry_after_over_the_rate_storing_nothing(
        api, deployment, make_upload, django_capture_on_commit_callbacks, clock, shared_cache):
    for number in (1, 2):
        accepted, _ = submit(api, make_upload, django_capture_on_commit_callbacks, number)
        assert accepted.status_code == 201, accepted.content
        clock[0] += 10

    refused, callbacks = submit(api, make_upload, django_capture_on_commit_callbacks, 3)

    assert refused.status_code == 429
    # The oldest of the two requests leaves the one-minute window 40 s from now.
    assert refused["Retry-After"] == "40"
    assert "40 seconds" in error_text(refused)
    assert Case.objects.count() == 2
    assert len(stored_files()) == 2
    assert callbacks == []
    if shared_cache == "redis":  # the window: the two requests let through, as a sorted set
        backend = caches["default"]
        key = backend.make_and_validate_key(f"throttle_api_key_key:{api_key_prefix(api)}")
        assert backend._cache.get_client(key).zcard(key) == 2


def test_the_key_may_submit_again_once_the_window_has_passed(
        api, deployment, make_upload, django_capture_on_commit_callbacks, clock):
    for number in (1, 2):
        assert submit(api, make_upload, django_capture_on_commit_callbacks,
                      number)[0].status_code == 201
    assert submit(api, make_upload, django_capture_on_commit_callbacks,
                  3)[0].status_code == 429

    clock[0] += 61
    response, _ = submit(api, make_upload, django_capture_on_commit_callbacks, 3)

    assert response.status_code == 201, response.content


def test_each_key_has_its_own_count(api, client_user, deployment, clock):
    _, second_key = api_key_create(user=client_user, name="second", deployments=[deployment])
    for _ in range(2):
        assert api.get(f"{URL}999999/").status_code == 404
    assert api.get(f"{URL}999999/").status_code == 429

    # The same user, another key: not throttled by the first key's requests.
    assert client_with(second_key).get(f"{URL}999999/").status_code == 404


def test_a_logged_in_session_is_counted_per_user(admin_user, deployment, clock):
    other_admin = User.objects.create_user("other-admin", is_staff=True, is_superuser=True)
    session = APIClient()
    session.force_login(admin_user)
    other_session = APIClient()
    other_session.force_login(other_admin)

    statuses = [session.get(POLICY).status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert session.get(POLICY)["Retry-After"] == "60"
    assert other_session.get(POLICY).status_code == 200


def test_the_rate_comes_from_the_setting(api, deployment, settings, clock):
    settings.API_THROTTLE_RATE = "5/hour"

    statuses = [api.get(f"{URL}999999/").status_code for _ in range(6)]

    assert statuses == [404] * 5 + [429]
    clock[0] += 120  # still inside the hour
    assert api.get(f"{URL}999999/")["Retry-After"] == "3480"


@pytest.mark.parametrize(("value", "rate"), [
    ("600/min", "600/min"), ("10/s", "10/s"), (" 3 / hour ", "3/hour"), ("1/day", "1/day"),
])
def test_it_reads_a_rate(monkeypatch, value, rate):
    monkeypatch.setenv("API_THROTTLE_RATE", value)

    assert env_rate("API_THROTTLE_RATE", "600/min") == rate


@pytest.mark.parametrize("value", ["600", "0/min", "-5/min", "ten/min", "600/fortnight",
                                   "600/mango", "600/min/x", ""])
def test_it_refuses_a_wrong_rate(monkeypatch, value):
    monkeypatch.setenv("API_THROTTLE_RATE", value)

    with pytest.raises(ImproperlyConfigured, match="API_THROTTLE_RATE"):
        env_rate("API_THROTTLE_RATE", "600/min")


def test_a_wrong_rate_stops_start_up():
    assert django_setup(**VALID, API_THROTTLE_RATE="100/hour").returncode == 0

    result = django_setup(**VALID, API_THROTTLE_RATE="lots")

    assert result.returncode != 0
    assert failure(result).startswith("django.core.exceptions.ImproperlyConfigured")
    assert "API_THROTTLE_RATE" in failure(result)


class Answers:
    """A stand-in for requests.Session whose POSTs answer these statuses in turn."""

    def __init__(self, *answers: tuple[int, dict[str, str]]) -> None:
        self.answers = list(answers)
        self.posts: list[tuple[str, dict]] = []

    def post(self, url: str, **request):
        self.posts.append((url, request))
        status, headers = self.answers.pop(0)
        return type("Answer", (), {"status_code": status, "headers": headers})()


def test_the_demo_client_waits_as_long_as_retry_after_says():
    session = Answers((429, {"Retry-After": "7"}), (429, {"Retry-After": "3"}), (201, {}))
    slept: list[float] = []

    response = post_within_rate(session, "http://demo/api/v1/cases/", sleep=slept.append,
                                data={"external_id": "demo-1"})

    assert response.status_code == 201
    assert slept == [7.0, 3.0]
    assert session.posts == [("http://demo/api/v1/cases/", {"data": {"external_id": "demo-1"}})] * 3


def test_the_demo_client_gives_up_after_a_few_attempts():
    session = Answers(*[(429, {"Retry-After": "1"})] * 3)
    slept: list[float] = []

    response = post_within_rate(session, "http://demo/", attempts=3, sleep=slept.append)

    assert response.status_code == 429
    assert len(session.posts) == 3
    assert slept == [1.0, 1.0]
