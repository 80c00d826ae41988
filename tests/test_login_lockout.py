"""Repeated failed logins lock a username out from one address for a while (django-axes), on
the login page and the admin's login alike; API keys are not passwords and are never locked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.test import Client
from django.utils import timezone

LIMIT = settings.AXES_FAILURE_LIMIT
LOGIN_PAGES = ["/login/", "/admin/login/"]


def log_in(client: Client, username: str, password: str, *, url: str = "/login/",
           address: str = "10.0.0.1"):
    return client.post(url, {"username": username, "password": password},
                       REMOTE_ADDR=address)


def fail(client: Client, username: str, times: int, **kwargs) -> list[int]:
    return [log_in(client, username, "wrong", **kwargs).status_code for _ in range(times)]


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_it_counts_failures_in_the_test_settings_too():
    assert settings.AXES_ENABLED is True
    assert LIMIT == 5
    assert settings.AXES_COOLOFF_TIME.total_seconds() == 15 * 60


@pytest.mark.parametrize("url", LOGIN_PAGES)
def test_it_locks_a_username_out_after_the_failure_limit(client, admin_user, url):
    statuses = fail(client, "admin", LIMIT, url=url)

    # Each failure before the limit shows the form again; the last one shows the lockout.
    assert statuses == [200] * (LIMIT - 1) + [429]
    response = log_in(client, "admin", "admin-password", url=url)
    assert response.status_code == 429
    assert not logged_in(client)


def test_it_shows_a_page_that_says_why_and_for_how_long(client, reviewer):
    fail(client, "reviewer", LIMIT)

    response = log_in(client, "reviewer", "reviewer-password")

    assert response.status_code == 429
    assert "registration/locked_out.html" in [t.name for t in response.templates]
    page = response.content.decode()
    assert "Login locked" in page
    assert "15 minutes" in page
    assert f"{LIMIT} failed logins" in page


def test_a_lockout_on_one_login_page_holds_on_the_other(client, admin_user):
    fail(client, "admin", LIMIT, url="/login/")

    assert log_in(client, "admin", "admin-password", url="/admin/login/").status_code == 429
    assert not logged_in(client)


def test_it_lets_the_user_in_again_after_the_cool_off(client, reviewer):
    fail(client, "reviewer", LIMIT)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    response = log_in(client, "reviewer", "reviewer-password")

    assert response.status_code == 302
    assert logged_in(client)


def test_it_locks_only_that_username_from_that_address(client, reviewer, other_reviewer):
    fail(client, "reviewer", LIMIT, address="10.0.0.1")

    assert log_in(Client(), "other-reviewer", "other-reviewer-password",
                  address="10.0.0.1").status_code == 302
    assert log_in(Client(), "reviewer", "reviewer-password",
                  address="10.0.0.2").status_code == 302
    assert log_in(Client(), "reviewer", "reviewer-password",
                  address="10.0.0.1").status_code == 429


def test_a_successful_login_clears_the_count(client, reviewer):
    fail(client, "reviewer", LIMIT - 1)
    assert log_in(client, "reviewer", "reviewer-password").status_code == 302
    client.logout()

    statuses = fail(client, "reviewer", LIMIT - 1)

    assert statuses == [200] * (LIMIT - 1)
    assert log_in(client, "reviewer", "reviewer-password").status_code == 302


def test_api_keys_are_not_locked_out_with_the_password(client, client_user, api, deployment):
    fail(client, "client", LIMIT + 2, address="127.0.0.1")

    response = api.get("/api/v1/cases/", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200


def test_wrong_api_keys_count_no_login_failure(client, client_user, api_key):
    prefix = api_key.split(".")[0]
    for _ in range(LIMIT + 2):
        response = client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Api-Key {prefix}.wrong")
        assert response.status_code == 401

    assert AccessAttempt.objects.count() == 0
    assert log_in(client, "client", "client-password").status_code == 302
