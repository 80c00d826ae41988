"""The cases API: submit a case, read its status and decision."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from review.services import review_claim_next, review_submit
from reviewplatform import intake
from reviewplatform.models import Case, Deployment
from reviewplatform.pipeline import case_route
from reviewplatform.services import api_key_create
from rollout.services import deployment_create
from tests.conftest import png_bytes

URL = "/api/v1/cases/"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    """A media folder of this test's own, so that 'nothing was written' can be checked."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def noise_png(size: tuple[int, int] = (64, 64)) -> bytes:
    """A PNG that does not compress away, so that a cut-off copy loses pixel data."""
    buffer = io.BytesIO()
    Image.effect_noise(size, 60).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def form(make_upload, **overrides):
    data = {
        "deployment": "digits",
        "region": "north",
        "captured_at": "2026-05-01T21:30:00+02:00",
        "external_id": "camera-7/0001",
        "image": make_upload(),
        "metadata": '{"camera": "camera-7"}',
    }
    data.update(overrides)
    return {name: value for name, value in data.items() if value is not None}


def submit(api, data, django_capture_on_commit_callbacks):
    # The prediction job is captured, not run: running it would need the broker.
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api.post(URL, data, format="multipart")
    return response, callbacks


def api_client_for(user: User) -> APIClient:
    client = APIClient()
    key = api_key_create(user=user, name="k", deployments=Deployment.objects.all())[1]
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_it_stores_a_submitted_case(api, client_user, deployment, make_upload,
                                    django_capture_on_commit_callbacks):
    image = png_bytes((40, 30), "black")

    response, callbacks = submit(api, form(make_upload, image=make_upload(content=image)),
                                 django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "received"
    assert body["decision"] is None
    assert response["Location"] == f"/api/v1/cases/{body['id']}/"
    case = Case.objects.get()
    assert case.pk == body["id"]
    assert case.captured_at == datetime(2026, 5, 1, 19, 30, tzinfo=UTC)
    assert case.region.code == "north"
    assert case.deployment == deployment
    assert case.external_id == "camera-7/0001"
    assert case.metadata == {"camera": "camera-7"}
    assert case.submitted_by == client_user
    assert (case.width, case.height) == (40, 30)
    with case.image.open("rb") as file:
        assert file.read() == image
    assert stored_files() == [Path(case.image.path)]
    assert len(callbacks) == 1


def assert_refused(response, callbacks, field: str, status: int = 400,
                   code: str = "invalid") -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "fields"}, body
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert field in body["fields"], body
    assert all(isinstance(m, str) and m for m in body["fields"][field]), body
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert callbacks == []


def test_it_refuses_a_text_file_as_image(api, deployment, make_upload,
                                         django_capture_on_commit_callbacks):
    upload = make_upload(content=b"this is not an image\n", name="notes.png")

    response, callbacks = submit(api, form(make_upload, image=upload),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")


def test_it_refuses_an_empty_file(api, deployment, make_upload,
                                  django_capture_on_commit_callbacks):
    # Not make_upload: it replaces empty content with a default image.
    upload = SimpleUploadedFile("empty.png", b"", content_type="image/png")

    response, callbacks = submit(api, form(make_upload, image=upload),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")
    assert "empty" in response.json()["message"]


def test_it_refuses_a_truncated_png(api, deployment, make_upload,
                                    django_capture_on_commit_callbacks):
    whole = noise_png()
    upload = make_upload(content=whole[: len(whole) // 2])

    response, callbacks = submit(api, form(make_upload, image=upload),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")


@pytest.mark.parametrize("progressive", [False, True])
def test_it_refuses_a_truncated_or_damaged_jpeg(api, deployment, make_upload, progressive,
                                                django_capture_on_commit_callbacks):
    buffer = io.BytesIO()
    Image.effect_noise((640, 480), 60).convert("RGB").save(buffer, format="JPEG", quality=85,
                                                            progressive=progressive)
    whole = buffer.getvalue()
    damaged = bytearray(whole)
    damaged[len(whole) // 2: len(whole) // 2 + 2000] = b"\xff" * 2000

    for content in (whole[: len(whole) - 10], bytes(damaged)):
        response, callbacks = submit(api, form(make_upload, image=make_upload(content=content)),
                                     django_capture_on_commit_callbacks)

        assert_refused(response, callbacks, "image")


def test_it_refuses_an_image_over_the_size_limit(api, deployment, make_upload, settings,
                                                 django_capture_on_commit_callbacks):
    image = noise_png()
    settings.MAX_IMAGE_BYTES = len(image) - 1

    response, callbacks = submit(api, form(make_upload, image=make_upload(content=image)),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")
    assert str(len(image) - 1) in response.json()["message"]


def test_it_accepts_an_image_at_the_size_limit(api, deployment, make_upload, settings,
                                               django_capture_on_commit_callbacks):
    image = noise_png()
    settings.MAX_IMAGE_BYTES = len(image)

    response, _ = submit(api, form(make_upload, image=make_upload(content=image)),
                         django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content


def test_it_refuses_an_image_with_too_many_pixels(api, deployment, make_upload, settings,
                                                  django_capture_on_commit_callbacks):
    settings.MAX_IMAGE_PIXELS = 100 * 100 - 1
    upload = make_upload(content=png_bytes((100, 100)))

    response, callbacks = submit(api, form(make_upload, image=upload),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")
    assert "pixels" in response.json()["message"]


def test_it_refuses_an_image_too_small_to_judge(api, deployment, make_upload, settings,
                                                django_capture_on_commit_callbacks):
    upload = make_upload(content=png_bytes((settings.MIN_IMAGE_SIDE - 1, 64)))

    response, callbacks = submit(api, form(make_upload, image=upload),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")


@pytest.mark.parametrize(("field", "overrides"), [
    ("captured_at", {"captured_at": "2026-05-01T21:30:00"}),
    ("captured_at", {"captured_at": "yesterday evening"}),
    ("captured_at", {"captured_at": "2026-13-45T21:30:00+02:00"}),
    ("region", {"region": "south"}),
    ("metadata", {"metadata": "[1, 2, 3]"}),
    ("metadata", {"metadata": '"a string"'}),
    ("metadata", {"metadata": "{not json"}),
    ("metadata", {"metadata": "null"}),
    ("metadata", {"metadata": "42"}),
    # PostgreSQL stores no NUL character in jsonb, in a string or a key, however deep.
    ("metadata", {"metadata": '{"a": "\\u0000"}'}),
    ("metadata", {"metadata": '{"a\\u0000": 1}'}),
    ("metadata", {"metadata": '{"a": {"b": ["x", "y\\u0000z"]}}'}),
    ("external_id", {"external_id": "   "}),
])
def test_it_refuses_bad_input(api, deployment, make_upload, field, overrides,
                              django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, **overrides),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, field)


def test_it_explains_that_captured_at_needs_an_offset(api, deployment, make_upload,
                                                      django_capture_on_commit_callbacks):
    response, _ = submit(api, form(make_upload, captured_at="2026-05-01T21:30:00"),
                         django_capture_on_commit_callbacks)

    assert "offset" in response.json()["message"]


def test_it_names_the_known_regions_of_the_deployment(api, deployment, make_upload,
                                                      django_capture_on_commit_callbacks):
    response, _ = submit(api, form(make_upload, region="south"),
                         django_capture_on_commit_callbacks)

    assert "south" in response.json()["message"]
    assert "north" in response.json()["message"]


@pytest.mark.parametrize("missing", ["deployment", "region", "captured_at", "external_id",
                                     "image"])
def test_it_refuses_a_case_with_a_missing_field(api, deployment, make_upload, missing,
                                                django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, **{missing: None}),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, missing)


def test_it_names_every_missing_field(api, deployment, django_capture_on_commit_callbacks):
    response, callbacks = submit(api, {}, django_capture_on_commit_callbacks)

    for field in ["deployment", "region", "captured_at", "external_id", "image"]:
        assert_refused(response, callbacks, field)


def test_it_refuses_a_duplicate_external_id(api, deployment, make_upload,
                                            django_capture_on_commit_callbacks):
    first, _ = submit(api, form(make_upload), django_capture_on_commit_callbacks)
    assert first.status_code == 201
    files_before = stored_files()

    response, callbacks = submit(api, form(make_upload, image=make_upload(content=noise_png())),
                                 django_capture_on_commit_callbacks)

    assert response.status_code == 409, response.content
    assert response.json()["code"] == "conflict"
    assert f"case {first.json()['id']}" in response.json()["message"]
    assert "external_id" in response.json()["fields"]
    assert Case.objects.count() == 1
    assert stored_files() == files_before
    assert callbacks == []


def test_it_accepts_the_same_external_id_in_another_deployment(
        api, client_user, deployment, admin_user, make_upload, django_capture_on_commit_callbacks):
    bears = deployment_create(slug="bears", name="Bears", labels=["grizzly", "black"],
                              regions=[("north", "North", "Europe/Oslo")], actor=admin_user)
    client_user.api_keys.get().deployments.add(bears)
    submit(api, form(make_upload), django_capture_on_commit_callbacks)

    response, _ = submit(api, form(make_upload, deployment="bears"),
                         django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    assert Case.objects.count() == 2


def test_it_requires_credentials(deployment, make_upload, django_capture_on_commit_callbacks):
    response, callbacks = submit(APIClient(), form(make_upload),
                                 django_capture_on_commit_callbacks)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json() == {
        "code": "not_authenticated",
        "message": "this needs an API key, sent as the header 'Authorization: Api-Key your-key'",
        "fields": {}}
    assert Case.objects.count() == 0
    assert callbacks == []


@pytest.mark.parametrize("key", ["deadbeef.not-the-secret", "no-dot-in-this-key"])
def test_it_refuses_a_wrong_api_key(api_key, deployment, make_upload, key,
                                    django_capture_on_commit_callbacks):
    client = APIClient()
    prefix = api_key.split(".")[0]
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key.replace('deadbeef', prefix)}")

    response, _ = submit(client, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert response.json()["message"] in {"invalid or revoked API key", "malformed API key"}
    assert Case.objects.count() == 0
    assert stored_files() == []


def test_it_refuses_a_revoked_api_key(api, client_user, deployment, make_upload,
                                      django_capture_on_commit_callbacks):
    client_user.api_keys.update(revoked_at=datetime(2026, 1, 1, tzinfo=UTC))

    response, _ = submit(api, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 401
    assert Case.objects.count() == 0


def test_it_refuses_a_user_without_the_api_client_permission(
        outsider, deployment, make_upload, django_capture_on_commit_callbacks):
    response, callbacks = submit(api_client_for(outsider), form(make_upload),
                                 django_capture_on_commit_callbacks)

    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "reviewplatform.add_case" in response.json()["message"]
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert callbacks == []


def test_it_shows_a_received_case_without_a_decision(api, deployment, make_upload,
                                                     django_capture_on_commit_callbacks):
    created, _ = submit(api, form(make_upload), django_capture_on_commit_callbacks)

    response = api.get(created["Location"])

    assert response.status_code == 200
    body = response.json()
    assert body["id"] == created.json()["id"]
    assert body["status"] == "received"
    assert body["decision"] is None
    assert body["external_id"] == "camera-7/0001"
    assert body["region"] == "north"


def test_it_shows_the_human_decision(api, deployment, reviewer, make_upload,
                                     django_capture_on_commit_callbacks):
    created, _ = submit(api, form(make_upload), django_capture_on_commit_callbacks)
    case_route(case_id=created.json()["id"])
    task = review_claim_next(reviewer=reviewer)
    review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer, answer="4")

    response = api.get(created["Location"])

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "decided"
    assert body["decision"]["label"] == "4"
    assert body["decision"]["source"] == "human"
    assert body["decision"]["policy_version"] == 1


def test_it_hides_another_clients_case(api, client_user, deployment, make_upload,
                                       django_capture_on_commit_callbacks):
    created, _ = submit(api, form(make_upload), django_capture_on_commit_callbacks)
    other = User.objects.create_user(username="other-client")
    other.groups.add(Group.objects.get(name="api client"))

    response = api_client_for(other).get(created["Location"])

    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "fields": {},
                               "message": f"case {created.json()['id']} does not exist or is "
                                          "not yours"}


def test_it_answers_404_for_a_case_that_does_not_exist(api, deployment):
    response = api.get("/api/v1/cases/999999/")

    assert response.status_code == 404


def image_bytes(fmt: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "white").save(buffer, format=fmt)
    return buffer.getvalue()


def from_now(seconds: float) -> str:
    return (timezone.now() + timedelta(seconds=seconds)).isoformat()


def test_it_refuses_a_capture_time_more_than_five_minutes_ahead(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, captured_at=from_now(330)),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "captured_at")
    assert "is in the future (at most 300 seconds ahead" in response.json()["message"]


def test_it_refuses_a_capture_time_years_ahead(api, deployment, make_upload,
                                               django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, captured_at="2031-01-01T00:00:00+00:00"),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "captured_at")
    assert response.json()["fields"]["captured_at"][0].startswith(
        "captured_at 2031-01-01T00:00:00+00:00 is in the future")


def test_it_accepts_a_capture_time_a_little_ahead_of_its_clock(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    response, _ = submit(api, form(make_upload, captured_at=from_now(270)),
                         django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content


def test_it_reads_how_far_ahead_a_capture_time_may_be_from_the_settings(
        api, deployment, make_upload, settings, django_capture_on_commit_callbacks):
    settings.CAPTURED_AT_MAX_FUTURE_SECONDS = 0

    response, callbacks = submit(api, form(make_upload, captured_at=from_now(60)),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "captured_at")
    assert "at most 0 seconds ahead" in response.json()["message"]


def metadata_of(size: int, char: str = "x") -> str:
    """JSON metadata whose compact encoding is `size` bytes ({"note":"..."} is 11 + the note)."""
    return json.dumps({"note": char * ((size - 11) // len(char.encode()))})


def test_it_refuses_twenty_kilobytes_of_metadata(api, deployment, make_upload,
                                                 django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, metadata=metadata_of(20 * 1024)),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "metadata")
    assert response.json()["fields"]["metadata"] == [
        "metadata is 20480 bytes as JSON; the limit is 16384"]


def test_it_accepts_metadata_at_the_size_limit(api, deployment, make_upload, settings,
                                               django_capture_on_commit_callbacks):
    settings.CASE_METADATA_MAX_BYTES = 100

    response, _ = submit(api, form(make_upload, metadata=metadata_of(100)),
                         django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    assert Case.objects.get().metadata == {"note": "x" * 89}


def test_it_refuses_metadata_one_byte_over_the_limit(api, deployment, make_upload, settings,
                                                     django_capture_on_commit_callbacks):
    settings.CASE_METADATA_MAX_BYTES = 100

    response, callbacks = submit(api, form(make_upload, metadata=metadata_of(101)),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "metadata")


def test_it_measures_metadata_in_bytes_not_characters(api, deployment, make_upload, settings,
                                                      django_capture_on_commit_callbacks):
    settings.CASE_METADATA_MAX_BYTES = 100
    metadata = json.dumps({"note": "é" * 46})  # 57 characters, 103 bytes

    response, callbacks = submit(api, form(make_upload, metadata=metadata),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "metadata")
    assert "103 bytes" in response.json()["message"]


def test_it_says_that_metadata_may_not_hold_a_nul_character(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, metadata='{"a": "\\u0000"}'),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "metadata")
    assert response.json()["fields"] == {"metadata": [
        "metadata may not contain NUL characters (\\u0000), in a key or a string"]}


def test_it_refuses_an_external_id_over_200_characters(api, deployment, make_upload,
                                                       django_capture_on_commit_callbacks):
    response, callbacks = submit(api, form(make_upload, external_id="c" * 201),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "external_id")
    assert response.json()["fields"]["external_id"] == [
        "external_id is 201 characters long; the limit is 200"]


def test_it_accepts_an_external_id_of_200_characters(api, deployment, make_upload,
                                                     django_capture_on_commit_callbacks):
    response, _ = submit(api, form(make_upload, external_id="c" * 200),
                         django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    assert Case.objects.get().external_id == "c" * 200


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_it_accepts_the_default_image_formats(api, deployment, make_upload, fmt,
                                              django_capture_on_commit_callbacks):
    upload = make_upload(content=image_bytes(fmt), name=f"case.{fmt.lower()}")

    response, _ = submit(api, form(make_upload, image=upload), django_capture_on_commit_callbacks)

    assert response.status_code == 201, response.content
    assert Path(Case.objects.get().image.name).suffix == f".{fmt.lower()}"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_it_refuses_an_image_format_outside_the_default_list(
        api, deployment, make_upload, fmt, django_capture_on_commit_callbacks):
    upload = make_upload(content=image_bytes(fmt), name="case.png")

    response, callbacks = submit(api, form(make_upload, image=upload),
                                 django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")
    assert response.json()["fields"]["image"] == [
        f"the image is a {fmt}, a format the platform does not accept "
        "(accepted: JPEG, PNG, WebP)"]


def test_it_reads_the_allowed_image_formats_from_the_settings(
        api, deployment, make_upload, settings, django_capture_on_commit_callbacks):
    settings.ALLOWED_IMAGE_FORMATS = ["PNG"]

    response, callbacks = submit(api, form(make_upload, image=make_upload(
        content=image_bytes("JPEG"))), django_capture_on_commit_callbacks)

    assert_refused(response, callbacks, "image")
    assert response.json()["message"].endswith("(accepted: PNG)")


def crash_after(real):
    def call(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("the connection dropped")
    return call


def crash_before(real):
    def call(*args, **kwargs):
        raise RuntimeError("the disk is full")
    return call


@pytest.mark.parametrize(("owner", "name", "crash"), [
    (Case, "save", crash_before),  # the image written, the row not
    (Case, "save", crash_after),  # the row written in its savepoint
    (intake.transaction, "on_commit", crash_before),  # stored, its prediction not yet queued
])
def test_it_leaves_no_image_behind_when_storing_the_case_crashes(
        api, deployment, make_upload, monkeypatch, owner, name, crash,
        django_capture_on_commit_callbacks):
    monkeypatch.setattr(owner, name, crash(getattr(owner, name)))
    api.raise_request_exception = False

    response, callbacks = submit(api, form(make_upload), django_capture_on_commit_callbacks)

    assert response.status_code == 500
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert callbacks == []
