"""`Idempotency-Key` on POST /api/v1/cases/: a retry gets the first answer, never a second case."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from reviewplatform.models import Case, IdempotencyKey
from reviewplatform.services.idempotency import (
    CLAIM_ABANDONED_SECONDS,
    idempotency_key_answer,
    idempotency_key_claim,
)
from reviewplatform.tasks import idempotency_keys_expire
from rollout.services import deployment_create
from tests.conftest import png_bytes
from tests.test_api_cases import api_client_for, form, media_root, stored_files  # noqa: F401

URL = "/api/v1/cases/"


def post(api, data, capture, key: str | None = "retry-1"):
    headers = {"Idempotency-Key": key} if key is not None else {}
    with capture(execute=False) as callbacks:
        response = api.post(URL, data, format="multipart", headers=headers)
    return response, callbacks


def test_it_answers_a_retry_with_the_first_answer(api, deployment, make_upload,
                                                  django_capture_on_commit_callbacks):
    image = png_bytes((40, 30), "black")
    first, first_jobs = post(api, form(make_upload, image=make_upload(content=image)),
                             django_capture_on_commit_callbacks)
    again, again_jobs = post(api, form(make_upload, image=make_upload(content=image)),
                             django_capture_on_commit_callbacks)

    assert first.status_code == 201, first.content
    assert again.status_code == 201, again.content
    assert again.json() == first.json()
    assert again["Location"] == first["Location"] == f"/api/v1/cases/{first.json()['id']}/"
    assert again["Idempotent-Replayed"] == "true"
    assert first.get("Idempotent-Replayed") is None
    assert Case.objects.count() == 1
    assert len(stored_files()) == 1
    assert len(first_jobs) == 1
    assert again_jobs == []
    stored = IdempotencyKey.objects.get()
    assert (stored.key, stored.status_code) == ("retry-1", 201)


def test_it_refuses_the_same_key_with_another_request(api, deployment, make_upload,
                                                     django_capture_on_commit_callbacks):
    post(api, form(make_upload), django_capture_on_commit_callbacks)

    response, jobs = post(api, form(make_upload, external_id="camera-7/0002"),
                          django_capture_on_commit_callbacks)

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in response.json()["fields"]
    assert Case.objects.count() == 1
    assert len(stored_files()) == 1
    assert jobs == []


def test_it_refuses_the_same_key_with_another_image(api, deployment, make_upload,
                                                   django_capture_on_commit_callbacks):
    post(api, form(make_upload, image=make_upload(content=png_bytes((40, 30), "black"))),
         django_capture_on_commit_callbacks)

    response, jobs = post(
        api, form(make_upload, image=make_upload(content=png_bytes((40, 30), "white"))),
        django_capture_on_commit_callbacks)

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "idempotency_key_reused"
    assert Case.objects.count() == 1
    assert jobs == []


def test_it_refuses_a_key_whose_first_request_is_in_progress(
        api, client_user, deployment, make_upload, django_capture_on_commit_callbacks):
    post(api, form(make_upload), django_capture_on_commit_callbacks, key="other")
    # The first request with "retry-1" claimed the key and has not answered yet.
    IdempotencyKey.objects.filter(key="other").update(key="retry-1", status_code=None,
                                                      body=None)
    Case.objects.all().delete()

    response, jobs = post(api, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "idempotency_key_in_progress"
    assert Case.objects.count() == 0
    assert jobs == []


def test_it_stores_a_refusal_as_the_answer(api, deployment, make_upload,
                                          django_capture_on_commit_callbacks):
    bad = form(make_upload, region="atlantis")
    first, _ = post(api, bad, django_capture_on_commit_callbacks)
    again, jobs = post(api, form(make_upload, region="atlantis"),
                       django_capture_on_commit_callbacks)

    assert first.status_code == 400, first.content
    assert again.status_code == 400
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get().status_code == 400
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


@pytest.mark.parametrize("slug", ["bears", "nowhere"])
def test_it_stores_a_refusal_of_the_deployment_as_the_answer(
        api, deployment, admin_user, make_upload, slug, django_capture_on_commit_callbacks):
    deployment_create(slug="bears", name="Bears", labels=["grizzly", "black"],
                      regions=[("north", "North", "Europe/Oslo")], actor=admin_user)
    first, _ = post(api, form(make_upload, deployment=slug), django_capture_on_commit_callbacks)
    again, jobs = post(api, form(make_upload, deployment=slug),
                       django_capture_on_commit_callbacks)

    assert first.status_code == 403, first.content
    assert first.json()["code"] == "permission_denied"
    assert again.status_code == 403
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert IdempotencyKey.objects.get().status_code == 403
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def test_it_keeps_no_answer_for_a_caller_who_may_not_submit(
        outsider, deployment, make_upload, django_capture_on_commit_callbacks):
    # Refused before the request is read: the answer is about the caller, not this request,
    # and a retry after the permission is granted is processed.
    client = api_client_for(outsider)
    refused, _ = post(client, form(make_upload), django_capture_on_commit_callbacks)
    outsider.user_permissions.add(Permission.objects.get(codename="add_case"))
    allowed, jobs = post(client, form(make_upload), django_capture_on_commit_callbacks)

    assert refused.status_code == 403, refused.content
    assert refused.json()["code"] == "permission_denied"
    assert allowed.status_code == 201, allowed.content
    assert allowed.get("Idempotent-Replayed") is None
    assert IdempotencyKey.objects.get().status_code == 201
    assert len(jobs) == 1


def test_it_refuses_a_key_over_255_characters(api, deployment, make_upload,
                                              django_capture_on_commit_callbacks):
    response, jobs = post(api, form(make_upload), django_capture_on_commit_callbacks,
                          key="k" * 256)

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert "Idempotency-Key" in response.json()["fields"]
    assert Case.objects.count() == 0
    assert IdempotencyKey.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def test_it_accepts_a_key_of_255_characters(api, deployment, make_upload,
                                            django_capture_on_commit_callbacks):
    response, _ = post(api, form(make_upload), django_capture_on_commit_callbacks,
                       key="k" * 255)

    assert response.status_code == 201, response.content
    assert IdempotencyKey.objects.get().key == "k" * 255


def test_it_scopes_keys_to_the_user(api, deployment, make_upload, outsider,
                                    django_capture_on_commit_callbacks):
    outsider.user_permissions.add(Permission.objects.get(codename="add_case"))
    other = api_client_for(outsider)
    first, _ = post(api, form(make_upload), django_capture_on_commit_callbacks)

    response, jobs = post(other, form(make_upload, external_id="camera-9/0001"),
                          django_capture_on_commit_callbacks)

    assert first.status_code == 201, first.content
    assert response.status_code == 201, response.content
    assert response.json()["id"] != first.json()["id"]
    assert len(jobs) == 1
    assert IdempotencyKey.objects.count() == 2


def test_it_submits_twice_without_a_key(api, deployment, make_upload,
                                        django_capture_on_commit_callbacks):
    first, _ = post(api, form(make_upload), django_capture_on_commit_callbacks, key=None)
    again, _ = post(api, form(make_upload), django_capture_on_commit_callbacks, key=None)

    assert first.status_code == 201
    assert again.status_code == 409  # the external_id, not the key
    assert again.json()["code"] == "conflict"
    assert IdempotencyKey.objects.count() == 0


@pytest.mark.parametrize("hours", [24, 2])
def test_it_forgets_keys_older_than_the_setting(api, deployment, make_upload, settings, hours,
                                                django_capture_on_commit_callbacks):
    settings.IDEMPOTENCY_KEY_HOURS = hours
    post(api, form(make_upload), django_capture_on_commit_callbacks, key="old")
    post(api, form(make_upload, external_id="x-2"), django_capture_on_commit_callbacks,
         key="young")
    now = timezone.now()
    IdempotencyKey.objects.filter(key="old").update(
        created_at=now - timedelta(hours=hours, seconds=1))
    IdempotencyKey.objects.filter(key="young").update(
        created_at=now - timedelta(hours=hours, seconds=-60))

    assert idempotency_keys_expire() == 1

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["young"]


def test_it_processes_an_expired_key_afresh(api, deployment, make_upload, settings,
                                            django_capture_on_commit_callbacks):
    post(api, form(make_upload), django_capture_on_commit_callbacks)
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    response, jobs = post(api, form(make_upload, external_id="camera-7/0002"),
                          django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    assert Case.objects.count() == 2
    assert len(jobs) == 1


def test_it_runs_the_expiry_from_beat(settings):
    schedule = settings.CELERY_BEAT_SCHEDULE["idempotency-keys-expire"]

    assert schedule["task"] == "reviewplatform.tasks.idempotency_keys_expire"


def test_it_documents_the_header_on_the_submit(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    parameters = schema["paths"]["/api/v1/cases/"]["post"]["parameters"]
    header = next(p for p in parameters if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert header.get("required", False) is False
    assert header["schema"]["type"] == "string"
    assert "409" in schema["paths"]["/api/v1/cases/"]["post"]["responses"]


@pytest.mark.parametrize("status", [429, 500, 503])
def test_it_lets_the_key_go_after_a_429_or_a_5xx(client_user, status):
    claim = idempotency_key_claim(user=client_user, key="k", request_hash="h")

    idempotency_key_answer(claim=claim, status_code=status, body={"code": "x"}, headers={})

    assert IdempotencyKey.objects.count() == 0
    again = idempotency_key_claim(user=client_user, key="k", request_hash="h")
    assert isinstance(again, IdempotencyKey)


def test_it_lets_the_key_go_when_the_submit_crashes(api, deployment, make_upload, monkeypatch,
                                                    django_capture_on_commit_callbacks):
    def crash(**_):
        raise RuntimeError("the disk is full")
    monkeypatch.setattr("reviewplatform.api.case_intake", crash)
    api.raise_request_exception = False

    response, jobs = post(api, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 500
    assert IdempotencyKey.objects.count() == 0
    assert Case.objects.count() == 0
    assert jobs == []


def test_it_takes_over_a_claim_left_by_a_request_that_died(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    post(api, form(make_upload), django_capture_on_commit_callbacks, key="other")
    # A request with "retry-1" claimed the key, then its worker was killed before it stored.
    IdempotencyKey.objects.update(
        key="retry-1", status_code=None, body=None,
        created_at=timezone.now() - timedelta(seconds=CLAIM_ABANDONED_SECONDS + 1))
    Case.objects.all().delete()

    response, jobs = post(api, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    assert len(jobs) == 1
    assert IdempotencyKey.objects.get().status_code == 201


def test_it_keeps_a_young_claim_in_progress(api, deployment, make_upload,
                                            django_capture_on_commit_callbacks):
    post(api, form(make_upload), django_capture_on_commit_callbacks, key="other")
    claim = IdempotencyKey.objects.get()
    IdempotencyKey.objects.filter(pk=claim.pk).update(
        key="retry-1", status_code=None,
        created_at=timezone.now() - timedelta(seconds=CLAIM_ABANDONED_SECONDS - 30))
    Case.objects.all().delete()

    response, _ = post(api, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 409
    assert response.json()["code"] == "idempotency_key_in_progress"
