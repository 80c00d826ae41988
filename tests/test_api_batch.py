"""POST /api/v1/cases/batch/: each case stored or refused on its own, a result per case."""

from __future__ import annotations

import base64
import json
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext

from reviewplatform import api_batch, intake, tasks
from reviewplatform.models import Case, IdempotencyKey
from rollout.services import deployment_create
from tests.conftest import png_bytes
from tests.test_api_cases import api_client_for, media_root, stored_files  # noqa: F401

URL = "/api/v1/cases/batch/"


def item(external_id: str, **overrides):
    values = {"deployment": "digits", "region": "north",
              "captured_at": "2026-05-01T21:30:00+02:00", "external_id": external_id,
              "metadata": {"camera": "camera-7"},
              "image_base64": base64.b64encode(png_bytes((40, 30), "black")).decode()}
    values.update(overrides)
    return values


def post(api, cases, capture, key: str | None = None):
    headers = {"Idempotency-Key": key} if key is not None else {}
    with capture(execute=False) as callbacks:
        response = api.post(URL, {"cases": cases}, format="json", headers=headers)
    return response, callbacks


def test_it_stores_each_case_and_answers_a_result_per_case(
        api, client_user, deployment, django_capture_on_commit_callbacks):
    response, jobs = post(api, [item("a"), item("b")], django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [(r["index"], r["status"]) for r in results] == [(0, 201), (1, 201)]
    assert [r["case"]["external_id"] for r in results] == ["a", "b"]
    assert all("error" not in r for r in results)
    cases = Case.objects.order_by("external_id")
    assert [c.pk for c in cases] == [r["case"]["id"] for r in results]
    assert all(c.submitted_by == client_user and (c.width, c.height) == (40, 30)
               for c in cases)
    assert cases[0].metadata == {"camera": "camera-7"}
    assert len(stored_files()) == 2
    # One prediction job for the batch's cases.
    assert len(jobs) == 1
    with mock.patch.object(tasks.predict_cases, "apply_async") as queued:
        jobs[0]()
    # with the quick retry: a broker that is down leaves the cases to beat's sweep
    queued.assert_called_once_with(([c.pk for c in cases],),
                                   retry_policy=tasks.QUEUE_RETRY_POLICY)


def test_it_refuses_only_the_items_at_fault(api, deployment,
                                            django_capture_on_commit_callbacks):
    cases = [
        item("good-1"),
        item("bad-region", region="atlantis"),
        item("bad-image", image_base64=base64.b64encode(b"not an image").decode()),
        item("bad-base64", image_base64="%%%"),
        item("good-1"),  # the external_id of the first item: a conflict
        "not an object",
        item("future", captured_at="2999-01-01T00:00:00+00:00"),
        item("good-2"),
    ]

    response, jobs = post(api, cases, django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 400, 400, 409, 400, 400, 201]
    fields = [next(iter(r["error"]["fields"]), None) for r in results if "error" in r]
    assert fields == ["region", "image_base64", "image_base64", "external_id", "non_field_errors",
                      "captured_at"]
    assert [r["error"]["code"] for r in results if "error" in r] == [
        "invalid", "invalid", "invalid", "conflict", "invalid", "invalid"]
    assert all(set(r["error"]) == {"code", "message", "fields"}
               for r in results if "error" in r)
    assert sorted(Case.objects.values_list("external_id", flat=True)) == ["good-1", "good-2"]
    assert f"(case {results[0]['case']['id']})" in results[4]["error"]["message"]
    assert len(stored_files()) == 2
    assert len(jobs) == 1


def test_it_refuses_only_the_item_whose_metadata_holds_a_nul_character(
        api, deployment, django_capture_on_commit_callbacks):
    cases = [item("good-1"), item("nul", metadata={"camera": "camera-\u0000"}),
             item("good-2")]

    response, jobs = post(api, cases, django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 201]
    assert results[1]["error"] == {
        "code": "invalid",
        "message": "metadata may not contain NUL characters (\\u0000), in a key or a string",
        "fields": {"metadata": [
            "metadata may not contain NUL characters (\\u0000), in a key or a string"]}}
    assert sorted(Case.objects.values_list("external_id", flat=True)) == ["good-1", "good-2"]
    assert len(stored_files()) == 2
    assert len(jobs) == 1


def test_it_refuses_an_item_for_a_deployment_outside_the_key(
        api, deployment, admin_user, django_capture_on_commit_callbacks):
    deployment_create(slug="letters", name="Letters", labels=["a", "b"],
                      regions=[("north", "North", "UTC")], actor=admin_user)

    response, jobs = post(api, [item("x", deployment="letters"), item("y"),
                                item("z", deployment="nowhere")],
                          django_capture_on_commit_callbacks)

    results = response.json()["results"]
    assert [r["status"] for r in results] == [403, 201, 403]
    foreign, unknown = results[0]["error"], results[2]["error"]
    assert foreign == {"code": "permission_denied", "message": (
        "this API key may not submit to deployment 'letters'; it may submit to: digits"),
        "fields": {"deployment": [foreign["message"]]}}
    # A deployment that does not exist is answered alike: the answer tells no client which
    # deployments exist.
    assert unknown["code"] == "permission_denied"
    assert unknown["message"].replace("nowhere", "?") == foreign["message"].replace("letters",
                                                                                   "?")
    assert list(unknown["fields"]) == ["deployment"]
    assert list(Case.objects.values_list("external_id", flat=True)) == ["y"]
    assert len(stored_files()) == 1
    assert len(jobs) == 1


@pytest.mark.parametrize("size", [0, 4])
def test_it_refuses_a_batch_over_the_limit_storing_nothing(
        api, deployment, settings, size, django_capture_on_commit_callbacks):
    settings.CASE_BATCH_MAX = 3

    response, jobs = post(api, [item(f"c{i}") for i in range(size)],
                          django_capture_on_commit_callbacks)

    assert response.status_code == 400, response.content
    assert "cases" in response.json()["fields"]
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def test_it_takes_100_cases_by_default(api, deployment, django_capture_on_commit_callbacks):
    response, jobs = post(api, [item(f"c{i}") for i in range(100)],
                          django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    assert {r["status"] for r in response.json()["results"]} == {201}
    assert Case.objects.count() == 100
    assert len(jobs) == 1
    too_many, _ = post(api, [item(f"d{i}") for i in range(101)],
                       django_capture_on_commit_callbacks)
    assert too_many.status_code == 400
    assert Case.objects.count() == 100


def test_it_refuses_a_user_who_may_not_submit(deployment, django_capture_on_commit_callbacks):
    nobody = User.objects.create_user("nobody")

    response, jobs = post(api_client_for(nobody), [item("a")],
                          django_capture_on_commit_callbacks)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert Case.objects.count() == 0
    assert jobs == []


def test_it_documents_the_batch(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    post_op = schema["paths"]["/api/v1/cases/batch/"]["post"]
    assert set(post_op["responses"]) >= {"200", "400", "401", "403"}
    assert "application/json" in post_op["requestBody"]["content"]
    result = schema["components"]["schemas"]["CaseBatchResult"]["properties"]
    assert set(result) == {"index", "status", "case", "error"}


def test_it_takes_a_multipart_batch_with_image_files(api, deployment, make_upload,
                                                     django_capture_on_commit_callbacks):
    cases = [item("m0"), item("m1"), item("m2")]
    for case in cases:
        del case["image_base64"]
    image = png_bytes((40, 30), "black")
    form = {"cases": json.dumps(cases), "image_0": make_upload(content=image),
            "image_2": make_upload(content=b"not an image", name="notes.png")}

    with django_capture_on_commit_callbacks(execute=False) as jobs:
        response = api.post(URL, form, format="multipart")

    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 400, 400]
    assert "image_base64" in results[1]["error"]["fields"]
    assert "image_base64" in results[2]["error"]["fields"]
    case = Case.objects.get()
    assert case.external_id == "m0"
    with case.image.open("rb") as file:
        assert file.read() == image
    assert len(stored_files()) == 1
    assert len(jobs) == 1


def test_it_refuses_a_multipart_batch_whose_cases_is_not_json(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as jobs:
        response = api.post(URL, {"cases": "[{", "image_0": make_upload()},
                            format="multipart")

    assert response.status_code == 400, response.content
    assert "cases" in response.json()["fields"]
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def test_it_answers_a_retry_with_the_same_key_with_the_first_answer(
        api, deployment, django_capture_on_commit_callbacks):
    cases = [item("a"), item("b", region="atlantis")]
    first, first_jobs = post(api, cases, django_capture_on_commit_callbacks, key="batch-1")
    again, again_jobs = post(api, cases, django_capture_on_commit_callbacks, key="batch-1")

    assert first.status_code == 200, first.content
    assert [r["status"] for r in first.json()["results"]] == [201, 400]
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert first.get("Idempotent-Replayed") is None
    assert list(Case.objects.values_list("external_id", flat=True)) == ["a"]
    assert len(stored_files()) == 1
    assert len(first_jobs) == 1
    assert again_jobs == []
    assert IdempotencyKey.objects.get().status_code == 200


def test_it_refuses_the_same_key_with_another_batch(api, deployment,
                                                   django_capture_on_commit_callbacks):
    post(api, [item("a")], django_capture_on_commit_callbacks, key="batch-1")

    response, jobs = post(api, [item("a"), item("b")], django_capture_on_commit_callbacks,
                          key="batch-1")

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in response.json()["fields"]
    assert list(Case.objects.values_list("external_id", flat=True)) == ["a"]
    assert len(stored_files()) == 1
    assert jobs == []


def test_it_refuses_the_same_key_with_another_image_in_a_multipart_batch(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    cases = json.dumps([{k: v for k, v in item("m0").items() if k != "image_base64"}])
    headers = {"Idempotency-Key": "batch-1"}
    with django_capture_on_commit_callbacks(execute=False) as jobs:
        first = api.post(URL, {"cases": cases, "image_0": make_upload(
            content=png_bytes((40, 30), "black"))}, format="multipart", headers=headers)
        again = api.post(URL, {"cases": cases, "image_0": make_upload(
            content=png_bytes((40, 30), "white"))}, format="multipart", headers=headers)

    assert first.status_code == 200, first.content
    assert again.status_code == 409, again.content
    assert again.json()["code"] == "idempotency_key_reused"
    assert Case.objects.count() == 1
    assert len(stored_files()) == 1
    assert len(jobs) == 1


def test_it_keeps_a_refusal_of_the_whole_batch_with_its_key(
        api, deployment, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as jobs:
        first = api.post(URL, [item("a")], format="json", headers={"Idempotency-Key": "b-1"})
        again = api.post(URL, [item("a")], format="json", headers={"Idempotency-Key": "b-1"})

    assert first.status_code == 400, first.content
    assert first.json()["code"] == "invalid"
    assert again.status_code == 400
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def test_it_documents_the_idempotency_key_on_the_batch(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    post_op = schema["paths"]["/api/v1/cases/batch/"]["post"]
    header = next(p for p in post_op["parameters"] if p["name"] == "Idempotency-Key")
    assert header["in"] == "header"
    assert header.get("required", False) is False
    assert "409" in post_op["responses"]


def test_it_refuses_a_batch_over_its_byte_limit_before_reading_it(
        api, deployment, settings, django_capture_on_commit_callbacks):
    settings.CASE_BATCH_MAX_BYTES = 500

    response, jobs = post(api, [item("a"), item("b"), item("c")],
                          django_capture_on_commit_callbacks, key="big-1")

    assert response.status_code == 413, response.content
    body = response.json()
    assert body["code"] == "request_too_large"
    assert body["fields"] == {}
    assert "at most 500" in body["message"]
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert IdempotencyKey.objects.count() == 0  # not read, so not an answer to keep
    assert jobs == []


def test_it_reads_a_content_length_of_other_digits_than_0_to_9_as_no_length(
        api, deployment, django_capture_on_commit_callbacks):
    # "²" is a digit to str.isdigit(), not to int(); Django reads the body as empty.
    with django_capture_on_commit_callbacks(execute=False) as jobs:
        response = api.post(URL, {"cases": [item("a")]}, format="json", CONTENT_LENGTH="²")

    assert response.status_code == 400, response.content
    assert response.json()["fields"] == {"cases": ["This field is required."]}
    assert Case.objects.count() == 0
    assert jobs == []


def test_it_reads_a_json_batch_over_the_limit_of_one_cases_form(
        api, deployment, settings, django_capture_on_commit_callbacks):
    # DATA_UPLOAD_MAX_MEMORY_SIZE is sized for one case; a batch has CASE_BATCH_MAX_BYTES.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    cases = [item(f"c{i}") for i in range(5)]
    assert len(json.dumps({"cases": cases})) > 1000

    response, jobs = post(api, cases, django_capture_on_commit_callbacks)

    assert response.status_code == 200, response.content
    assert {r["status"] for r in response.json()["results"]} == {201}
    assert len(jobs) == 1


def test_it_has_room_by_default_for_a_full_batch_of_the_largest_images(settings):
    image = len(base64.b64encode(b"\0" * settings.MAX_IMAGE_BYTES))
    full_batch = settings.CASE_BATCH_MAX * (image + settings.CASE_METADATA_MAX_BYTES)

    assert full_batch < settings.CASE_BATCH_MAX_BYTES


def test_it_answers_a_multipart_batch_with_too_many_files_in_the_envelope(
        api, deployment, settings, make_upload, django_capture_on_commit_callbacks):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 2
    cases = [{k: v for k, v in item(f"m{i}").items() if k != "image_base64"} for i in range(3)]
    form = {"cases": json.dumps(cases), **{f"image_{i}": make_upload() for i in range(3)}}

    with django_capture_on_commit_callbacks(execute=False) as jobs:
        response = api.post(URL, form, format="multipart")

    assert response.status_code == 413, response.content
    assert response.json() == {"code": "request_too_large", "fields": {},
                               "message": "the request holds more than 2 files"}
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def test_it_answers_multipart_cases_over_the_field_limit_in_the_envelope(
        api, deployment, settings, make_upload, django_capture_on_commit_callbacks):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    cases = [{**item("m0", metadata={"note": "x" * 2000})}]
    del cases[0]["image_base64"]

    with django_capture_on_commit_callbacks(execute=False) as jobs:
        response = api.post(URL, {"cases": json.dumps(cases), "image_0": make_upload()},
                            format="multipart")

    assert response.status_code == 413, response.content
    assert response.json()["code"] == "request_too_large"
    assert response.json()["message"] == ("the request's fields, its files apart, are over "
                                          "1000 bytes")
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert jobs == []


def crashing_on_call(number: int, real, *, after: bool):
    """`real`, but the call `number` (from 1) raises, before or after `real` has run."""
    calls = []

    def call(*args, **kwargs):
        calls.append(1)
        if len(calls) == number and not after:
            raise RuntimeError("the disk is full")
        result = real(*args, **kwargs)
        if len(calls) == number:
            raise RuntimeError("the connection dropped")
        return result
    return call


@pytest.mark.parametrize(("owner", "name", "number", "after"), [
    (api_batch, "case_prepare", 3, False),  # before the third item's image is written
    (api_batch, "cases_insert", 1, False),  # the images written, the rows not
    (api_batch, "cases_insert", 1, True),  # the rows written
    (intake.transaction, "on_commit", 1, False),  # all stored, their prediction not yet queued
])
def test_it_leaves_no_image_behind_when_an_item_crashes(
        api, deployment, monkeypatch, owner, name, number, after,
        django_capture_on_commit_callbacks):
    # Items are prepared or stored, then one crashes (or the rows' INSERT, or the queueing of
    # their job): all roll back, images too.
    monkeypatch.setattr(owner, name, crashing_on_call(number, getattr(owner, name),
                                                      after=after))
    api.raise_request_exception = False

    response, jobs = post(api, [item("a"), item("b"), item("c"), item("d")],
                          django_capture_on_commit_callbacks, key="crash-1")

    assert response.status_code == 500
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert IdempotencyKey.objects.count() == 0  # let go: the retry runs afresh
    assert jobs == []


def test_it_writes_a_batchs_cases_in_one_insert(api, deployment,
                                                django_capture_on_commit_callbacks):
    with CaptureQueriesContext(connection) as queries:
        response, _ = post(api, [item("a"), item("b"), item("c")],
                           django_capture_on_commit_callbacks)

    assert [r["status"] for r in response.json()["results"]] == [201, 201, 201]
    inserts = [q["sql"] for q in queries.captured_queries
               if q["sql"].startswith('INSERT INTO "reviewplatform_case"')]
    assert len(inserts) == 1


def test_it_refuses_an_external_id_already_stored_and_stores_the_others(
        api, deployment, django_capture_on_commit_callbacks):
    first, _ = post(api, [item("a")], django_capture_on_commit_callbacks)
    first_id = first.json()["results"][0]["case"]["id"]

    response, jobs = post(api, [item("b"), item("a"), item("c")],
                          django_capture_on_commit_callbacks)

    results = response.json()["results"]
    assert [r["status"] for r in results] == [201, 409, 201]
    assert results[1]["error"]["code"] == "conflict"
    assert f"(case {first_id})" in results[1]["error"]["message"]
    assert list(results[1]) == ["index", "status", "error"]
    assert sorted(Case.objects.values_list("external_id", flat=True)) == ["a", "b", "c"]
    assert len(stored_files()) == 3
    assert len(jobs) == 1
