"""Every 4xx of the client API and the staff rollout API answers one envelope:
{"code": ..., "message": ..., "fields": {...}}, in the platform's words, storing nothing."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from PIL import Image
from rest_framework import exceptions
from rest_framework.test import APIClient, APIRequestFactory

from reviewplatform.api_errors import exception_handler
from reviewplatform.models import Case
from tests.conftest import png_bytes

URL = "/api/v1/cases/"
POLICY = "/api/v1/deployments/digits/policy/"
# What a Python internal looks like in a message: a repr, a class name, a traceback's words.
PYTHON_INTERNALS = re.compile(r"<\w+|Error\b|Exception|object at 0x|\bNone\b|\(char \d+\)")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.fixture
def staff_api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def case_form(image: bytes, name: str = "case.jpg", **overrides) -> dict:
    upload = io.BytesIO(image)
    upload.name = name
    return {"deployment": "digits", "region": "north", "external_id": "camera-7/0001",
            "captured_at": "2026-05-01T21:30:00+02:00", "image": upload, **overrides}


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "fields"}, body
    assert body["code"] == code
    assert body["message"] and not PYTHON_INTERNALS.search(body["message"]), body["message"]
    for field, messages in body["fields"].items():
        for message in messages:
            assert message and not PYTHON_INTERNALS.search(message), (field, message)
    return body


def assert_nothing_stored() -> None:
    assert Case.objects.count() == 0
    assert stored_files() == []


def test_it_says_in_plain_words_that_a_text_file_is_not_an_image(api, deployment):
    response = api.post(URL, case_form(b"this is not an image\n", name="text.jpg"),
                        format="multipart")

    body = assert_envelope(response, 400, "invalid")
    expected = "the file is not an image the platform can read (accepted: JPEG, PNG, WebP)"
    assert body["fields"] == {"image": [expected]}
    assert body["message"] == expected
    assert_nothing_stored()


def test_it_says_a_cut_off_image_is_damaged_without_pillows_words(api, deployment):
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="PNG")
    whole = buffer.getvalue()

    response = api.post(URL, case_form(whole[: len(whole) // 2], name="cut.png"),
                        format="multipart")

    body = assert_envelope(response, 400, "invalid")
    assert body["fields"]["image"] == ["the image is damaged or cut off: it could not be decoded"]
    assert_nothing_stored()


def test_it_names_every_field_of_a_form_with_several_errors(api, deployment):
    response = api.post(URL, {"region": "north", "captured_at": "yesterday"},
                        format="multipart")

    body = assert_envelope(response, 400, "invalid")
    assert set(body["fields"]) == {"deployment", "captured_at", "external_id", "image"}
    assert body["fields"]["captured_at"] == [
        "expected an ISO 8601 date-time, e.g. 2026-05-01T21:30:00+02:00"]
    assert "captured_at: expected an ISO 8601 date-time" in body["message"]
    assert_nothing_stored()


def test_it_answers_a_key_naming_an_unknown_deployment_with_the_keys_deployments(
        api, deployment):
    response = api.post(URL, case_form(png_bytes(), deployment="bears"), format="multipart")

    body = assert_envelope(response, 403, "permission_denied")
    assert body["fields"] == {"deployment": [
        "this API key may not submit to deployment 'bears'; it may submit to: digits"]}
    assert_nothing_stored()


def test_it_answers_a_staff_session_naming_an_unknown_deployment_as_bad_input(
        staff_api, deployment):
    # No key, nothing scoped: staff may see every deployment anyway.
    response = staff_api.post(URL, case_form(png_bytes(), deployment="bears"),
                              format="multipart")

    body = assert_envelope(response, 400, "invalid")
    assert body["fields"] == {"deployment": ["unknown deployment 'bears'"]}
    assert_nothing_stored()


def test_it_answers_json_to_the_multipart_endpoint_as_an_unsupported_media_type(
        api, deployment):
    response = api.post(URL, {"deployment": "digits"}, format="json")

    body = assert_envelope(response, 415, "unsupported_media_type")
    assert body["message"] == ("the request body is application/json; this endpoint reads "
                               "multipart/form-data, application/x-www-form-urlencoded")
    assert body["fields"] == {}
    assert_nothing_stored()


def test_it_answers_a_method_the_endpoint_does_not_have(api, deployment):
    response = api.put(URL, {}, format="multipart")

    body = assert_envelope(response, 405, "method_not_allowed")
    assert body["message"].startswith("PUT is not allowed here (allowed: ")
    assert "POST" in body["message"]
    assert "POST" in response["Allow"] and "PUT" not in response["Allow"]
    assert_nothing_stored()


def test_it_answers_fields_over_the_upload_limit_as_too_large(api, deployment, settings):
    # Django itself refuses these (its own 400 page): the API answers in its envelope.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    metadata = '{"note": "%s"}' % ("x" * 2000)

    response = api.post(URL, case_form(png_bytes(), metadata=metadata), format="multipart",
                        headers={"Idempotency-Key": "big-1"})

    body = assert_envelope(response, 413, "request_too_large")
    assert body["message"] == "the request's fields, its files apart, are over 1000 bytes"
    assert body["fields"] == {}
    assert_nothing_stored()


def test_it_answers_a_method_the_batch_does_not_have(api, deployment):
    response = api.get("/api/v1/cases/batch/")

    body = assert_envelope(response, 405, "method_not_allowed")
    assert body["message"] == "GET is not allowed here (allowed: POST, OPTIONS)"
    assert response["Allow"] == "POST, OPTIONS"
    assert body["fields"] == {}


def test_it_answers_a_client_that_does_not_accept_json(api, deployment):
    response = api.get(URL, HTTP_ACCEPT="text/html")

    body = assert_envelope(response, 406, "not_acceptable")
    assert body["message"] == "this API answers only application/json"
    assert response["Content-Type"] == "application/json"


def test_it_refuses_a_submit_that_does_not_accept_json_storing_nothing(api, deployment):
    response = api.post(URL, case_form(png_bytes()), format="multipart",
                        HTTP_ACCEPT="application/xml")

    assert_envelope(response, 406, "not_acceptable")
    assert_nothing_stored()


def test_it_answers_an_unreadable_multipart_body_as_a_parse_error(api, deployment):
    response = api.generic("POST", URL, b"--nope\r\nnot multipart at all",
                           content_type="multipart/form-data; boundary=")

    body = assert_envelope(response, 400, "parse_error")
    assert body["message"] == "the request body could not be read as multipart/form-data"
    assert_nothing_stored()


def test_it_answers_a_missing_case_as_not_found(api, deployment):
    body = assert_envelope(api.get("/api/v1/cases/424242/"), 404, "not_found")

    assert body["message"] == "case 424242 does not exist or is not yours"


def test_it_answers_an_api_address_that_does_not_exist_in_the_envelope(api, client):
    response = api.get("/api/v1/nothing-here/")

    body = assert_envelope(response, 404, "not_found")
    assert body["message"] == "there is no API endpoint at /api/v1/nothing-here/"
    assert client.get("/nothing-here/")["Content-Type"].startswith("text/html")


def test_the_rollout_api_answers_a_malformed_json_body_as_a_parse_error(staff_api, deployment):
    response = staff_api.generic("POST", POLICY, b'{"stage": "limited",',
                                 content_type="application/json")

    body = assert_envelope(response, 400, "parse_error")
    assert body["message"] == "the request body could not be read as application/json"
    assert deployment.policy_versions.count() == 1


def test_the_rollout_api_answers_an_unknown_deployment_as_not_found(staff_api, deployment):
    response = staff_api.get("/api/v1/deployments/bears/policy/")

    body = assert_envelope(response, 404, "not_found")
    assert body["message"] == "there is no deployment 'bears'"


def test_the_rollout_api_names_the_field_a_service_refuses(staff_api, deployment):
    response = staff_api.post(POLICY, {"stage": "warp", "rules": [],
                                       "confidence_threshold": 0.9, "audit_rate": 0.05,
                                       "reason": "x"}, format="json")

    body = assert_envelope(response, 400, "invalid")
    assert list(body["fields"]) == ["stage"]
    assert body["message"] == body["fields"]["stage"][0]
    assert deployment.policy_versions.count() == 1


def test_the_rollout_api_refuses_a_client_in_the_platforms_words(api, deployment):
    body = assert_envelope(api.get(f"{POLICY}history/"), 403, "permission_denied")

    assert body["message"] == "your account may not do this"


def test_the_rollout_api_asks_an_anonymous_caller_for_credentials(deployment):
    response = APIClient().post(f"{POLICY}pause/", {"reason": "x"}, format="json")

    assert_envelope(response, 401, "not_authenticated")
    assert deployment.policy_versions.count() == 1


def test_it_says_when_to_try_again_after_throttling():
    request = APIRequestFactory().get(URL)

    response = exception_handler(exceptions.Throttled(wait=2.2), {"request": request})

    assert response.status_code == 429
    assert response.data == {"code": "throttled", "fields": {},
                             "message": "too many requests; try again in 3 seconds"}
    assert response["Retry-After"] == "3"


def test_it_flattens_nested_field_errors_with_their_path():
    detail = {"items": [{}, {"region": ["unknown region"]}], "note": "too long"}

    response = exception_handler(exceptions.ValidationError(detail), {})

    assert response.data["fields"] == {"items[1].region": ["unknown region"],
                                       "note": ["too long"]}
    assert response.data["code"] == "invalid"
