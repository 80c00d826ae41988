"""A request that cannot reach the database (PostgreSQL restarting, failing over) is answered
`503` with `Retry-After`, in the API's envelope or as a page: never a 500 with a traceback.
Any other uncaught error stays a 500. (make faults restarts the real server under load.)"""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client

from .conftest import CAPTURED_AT


@pytest.fixture
def unhandled() -> Client:
    return Client(raise_request_exception=False)


def test_the_api_answers_503_with_its_envelope_when_the_database_is_unreachable(
        unhandled, api_key, make_upload):
    refused = OperationalError('connection to server at "127.0.0.1", port 5432 failed: '
                               "Connection refused")
    # Stands in for the server going away: the key's read is the request's first query.
    with mock.patch("reviewplatform.authentication._api_key_read", side_effect=refused):
        response = unhandled.post(
            "/api/v1/cases/", {"deployment": "digits", "region": "north",
                               "external_id": "db-down", "image": make_upload(),
                               "captured_at": CAPTURED_AT.isoformat()},
            HTTP_AUTHORIZATION=f"Api-Key {api_key}")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "unavailable" and body["fields"] == {}
    assert "try again" in body["message"] and "127.0.0.1" not in body["message"]


def test_a_page_answers_503_when_the_database_is_unreachable(unhandled, reviewer):
    unhandled.force_login(reviewer)
    closed = InterfaceError("connection already closed")
    with mock.patch("django.contrib.sessions.backends.db.SessionStore.load",
                    side_effect=closed):
        response = unhandled.get("/")

    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    text = response.content.decode()
    assert "cannot reach its database" in text and "Traceback" not in text


def test_any_other_uncaught_error_is_still_a_500(unhandled, reviewer):
    unhandled.force_login(reviewer)
    with mock.patch("django.contrib.sessions.backends.db.SessionStore.load",
                    side_effect=RuntimeError("a bug")):
        response = unhandled.get("/")

    assert response.status_code == 500
    assert "Something went wrong" in response.content.decode()
