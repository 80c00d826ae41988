"""/healthz and /readyz for a load balancer: the process answers; the database, the broker and
a worker answer, or a 503 says which does not."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client

from reviewplatform.celery import app as celery_app
from tests.test_end_to_end import celery_process, start_worker  # noqa: F401


def ready(client: Client):
    response = client.get("/readyz")
    return response.status_code, response.json()


def test_healthz_answers_without_a_login_and_touches_nothing(client, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("the database is down")

    monkeypatch.setattr("django.db.backends.base.base.BaseDatabaseWrapper.cursor", broken)

    response = client.get("/healthz")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_readyz_is_not_ready_without_a_worker(client):
    assert ready(client) == (503, {"status": "not ready", "database": "ok", "broker": "ok",
                                   "workers": 0})


@pytest.mark.django_db
def test_readyz_names_a_broker_that_does_not_answer(client, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_write_url", "redis://127.0.0.1:1/0")

    assert ready(client) == (503, {"status": "not ready", "database": "ok",
                                   "broker": "unreachable", "workers": 0})


@pytest.mark.django_db
def test_readyz_names_a_database_that_does_not_answer(client, monkeypatch):
    def broken(*args, **kwargs):
        raise OperationalError("the database is down")

    monkeypatch.setattr("django.db.backends.base.base.BaseDatabaseWrapper.cursor", broken)

    status, body = ready(client)

    assert (status, body["database"]) == (503, "unreachable")


@pytest.mark.e2e
def test_readyz_is_ready_once_a_worker_answers(client, start_worker):  # noqa: F811
    start_worker()

    assert ready(client) == (200, {"status": "ready", "database": "ok", "broker": "ok",
                                   "workers": 1})
