"""Onboarding a team's own model, in its three forms (the service, the command, the staff API
and the staff page): a deployment protected from its first case, or a refusal that stores
nothing."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from inference.models import DomainThresholds, ModelVersion, ReferenceSet
from reviewplatform.errors import ServiceError
from reviewplatform.models import ApiKey, Case, Deployment
from reviewplatform.onboarding import RegionIn, deployment_onboard
from reviewplatform.services import api_key_create
from rollout.models import PolicyVersion
from tests.conftest import CAPTURED_AT
from tests.test_api_cases import media_root, stored_files  # noqa: F401

pytestmark = pytest.mark.django_db

OSLO = RegionIn(code="north", name="North", timezone="Europe/Oslo")
LABELS = [str(n) for n in range(10)]


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def reference(digit_files) -> bytes:
    """Two training-like images per label, as a folder per label (fastai's from_folder)."""
    return zipped({f"train/{label}/{path.name}": path.read_bytes()
                   for label, paths in digit_files.items() for path in paths[:2]})


@pytest.fixture
def learner(trained_model) -> Path:
    return trained_model.path


def onboard(learner, reference, **overrides):
    values = {"slug": "bears", "name": "Bear species", "learner": learner, "regions": [OSLO],
              "reference": io.BytesIO(reference), "client": "bear-app", "actor": None,
              **overrides}
    return deployment_onboard(**values)


def nothing_stored() -> None:
    assert not Deployment.objects.filter(slug="bears").exists()
    assert not ModelVersion.objects.exists()
    assert not ReferenceSet.objects.exists()
    assert not ApiKey.objects.exists()
    assert not User.objects.filter(username="bear-app").exists()
    assert stored_files() == []


def test_it_onboards_a_learner_as_a_protected_deployment(learner, reference, media_root,  # noqa: F811
                                                         admin_user, digit_files):
    done = onboard(learner, reference, labels=LABELS[::-1], actor=admin_user)

    deployment = Deployment.objects.get(slug="bears")
    assert (deployment.name, deployment.labels) == ("Bear species", LABELS[::-1])
    assert list(deployment.regions.values_list("code", "name", "timezone")) == [
        ("north", "North", "Europe/Oslo")]
    (policy,) = PolicyVersion.objects.filter(deployment=deployment)
    assert (policy.version, policy.stage, policy.rules) == (1, "shadow", [])
    champion = ModelVersion.objects.get(deployment=deployment)
    assert (champion.name, champion.is_champion, sorted(champion.labels)) == (
        "v1", True, LABELS)
    assert champion.created_by == admin_user
    stored = ReferenceSet.objects.get(model_version=champion)
    assert (stored.origin, stored.size) == ("upload", 20)
    assert stored.by_label == {label: 2 for label in sorted(LABELS)}
    assert stored.images.count() == 20
    limits = DomainThresholds.objects.get(deployment=deployment)
    assert limits.min_pixels and limits.min_contrast is not None
    assert limits.min_brightness < limits.max_brightness
    # The key is the new client's, scoped to this deployment only, and it works.
    client = User.objects.get(username="bear-app")
    assert client.groups.filter(name="api client").exists()
    assert not client.has_usable_password()
    assert done.api_key.user == client
    assert list(done.api_key.deployments.all()) == [deployment]
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {done.api_key_secret}")
    with digit_files["5"][0].open("rb") as image:
        response = api.post("/api/v1/cases/", {
            "deployment": "bears", "region": "north", "external_id": "first",
            "captured_at": CAPTURED_AT.isoformat(), "image": image}, format="multipart")
    assert response.status_code == 201, response.content
    assert Case.objects.get().deployment == deployment


@pytest.mark.parametrize("overrides, field, words", [
    ({"slug": "Bad Slug"}, "slug", "lower-case letters"),
    ({"name": "  "}, "name", "needs a name"),
    ({"regions": []}, "regions", "at least one region"),
    ({"regions": [RegionIn("north", "North", "Mars/Olympus")]}, "regions", "unknown time zone"),
    ({"regions": [OSLO, OSLO]}, "regions", "once"),
    ({"labels": ["0", "1"]}, "labels", "the learner's own"),
    ({"client": "bad name!"}, "client", "may hold letters"),
    ({"image_retention_days": 0}, "image_retention_days", "at least a day"),
])
def test_it_refuses_bad_input_storing_nothing(learner, reference, media_root, overrides,  # noqa: F811
                                              field, words):
    with pytest.raises(ServiceError) as refused:
        onboard(learner, reference, **overrides)

    assert refused.value.field == field
    assert words in refused.value.message
    nothing_stored()


@pytest.mark.parametrize("files, words", [
    (None, "not a zip file"),
    ({"train/bear/1.png": b""}, "not labels of the model: bear"),
    ({"train/3/1.png": b"not an image"}, "is not an image that can be read"),
    ({"3/a.png": "IMAGE", "4/b.png": "IMAGE"}, "at least 10 images; it has 2"),
])
def test_it_refuses_a_bad_reference_set_storing_nothing(learner, digit_files, media_root,  # noqa: F811
                                                        files, words):
    image = digit_files["3"][0].read_bytes()
    data = b"plain text" if files is None else zipped(
        {name: image if value == "IMAGE" else value for name, value in files.items()})

    with pytest.raises(ServiceError) as refused:
        onboard(learner, data)

    assert refused.value.field == "reference"
    assert words in refused.value.message
    nothing_stored()


def test_it_refuses_a_file_that_is_not_a_learner(tmp_path, reference, media_root):  # noqa: F811
    fake = tmp_path / "export.pkl"
    fake.write_bytes(b"not a pickle")

    with pytest.raises(ServiceError, match="not a loadable fastai learner"):
        onboard(fake, reference)
    nothing_stored()


def test_it_refuses_a_taken_slug_and_a_staff_account_as_client(learner, reference, media_root,  # noqa: F811
                                                              admin_user, deployment):
    with pytest.raises(ServiceError, match="a deployment 'digits' exists already"):
        onboard(learner, reference, slug="digits")
    with pytest.raises(ServiceError, match="admin is not an API client account"):
        onboard(learner, reference, client="admin")
    nothing_stored()


def test_a_crash_while_writing_leaves_no_file_and_no_row(learner, reference, media_root,  # noqa: F811
                                                         monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("the disk filled up")

    monkeypatch.setattr("reviewplatform.onboarding.domain_thresholds_fit", broken)

    with pytest.raises(RuntimeError):
        onboard(learner, reference)
    nothing_stored()


def test_the_command_onboards_and_prints_the_key_once(learner, reference, media_root,  # noqa: F811
                                                     tmp_path, capsys):
    archive = tmp_path / "reference.zip"
    archive.write_bytes(reference)

    call_command("deployment_create", str(learner), "--slug", "bears", "--name", "Bears",
                 "--region", "north:North:Europe/Oslo", "--region", "south:South:Africa/Lagos",
                 "--reference", str(archive), "--client", "bear-app")

    out, err = capsys.readouterr()
    key = out.strip()
    assert ApiKey.objects.get().prefix == key.split(".")[0]
    assert "deployment bears (0, 1, 2, 3, 4, 5, 6, 7, 8, 9) in the shadow stage" in err
    assert "reference set of 20 images" in err
    assert sorted(Deployment.objects.get(slug="bears").regions.values_list("code", flat=True)) \
        == ["north", "south"]
    with pytest.raises(CommandError, match="exists already"):
        call_command("deployment_create", str(learner), "--slug", "bears", "--name", "B",
                     "--region", "north:North:Europe/Oslo", "--reference", str(archive),
                     "--client", "bear-app")


def api_form(learner, reference, **overrides):
    return {"slug": "bears", "name": "Bear species", "client": "bear-app",
            "regions": '[{"code": "north", "name": "North", "timezone": "Europe/Oslo"}]',
            "learner": io.BytesIO(learner.read_bytes()), "reference": io.BytesIO(reference),
            **overrides}


def key_of(user, deployment) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Api-Key " + api_key_create(
        user=user, name="k", deployments=[deployment])[1])
    return api


def test_the_staff_api_onboards(learner, reference, media_root, admin_user, deployment):  # noqa: F811
    response = key_of(admin_user, deployment).post(
        "/api/v1/deployments/", api_form(learner, reference, labels='["9","8","7","6","5",'
                                                                    '"4","3","2","1","0"]',
                                         image_retention_days="90"),
        format="multipart")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["deployment"]["labels"] == LABELS[::-1]
    assert body["deployment"]["image_retention_days"] == 90
    assert Deployment.objects.get(slug="bears").image_retention_days == 90
    assert body["deployment"]["stage"] == "shadow"
    assert body["reference"]["size"] == 20
    assert body["api_key"]["client"] == "bear-app"
    assert ApiKey.objects.get(user__username="bear-app").prefix == body["api_key"]["prefix"]


def test_the_staff_api_refuses_others_and_bad_input_storing_nothing(
        learner, reference, media_root, admin_user, client_user, deployment):  # noqa: F811
    media_before = stored_files()
    refused = key_of(client_user, deployment).post(
        "/api/v1/deployments/", api_form(learner, reference), format="multipart")
    assert refused.status_code == 403
    assert "register_modelversion" in refused.json()["message"]
    bad = key_of(admin_user, deployment).post(
        "/api/v1/deployments/", api_form(learner, reference, regions="north"),
        format="multipart")
    assert bad.status_code == 400, bad.content
    assert bad.json()["code"] == "invalid" and "regions" in bad.json()["fields"]
    no_days = key_of(admin_user, deployment).post(
        "/api/v1/deployments/", api_form(learner, reference, image_retention_days="-3"),
        format="multipart")
    assert no_days.status_code == 400, no_days.content
    assert "image_retention_days" in no_days.json()["fields"]
    assert not Deployment.objects.filter(slug="bears").exists()
    assert stored_files() == media_before


def test_the_staff_page_onboards_and_shows_the_key_once(learner, reference, media_root,  # noqa: F811
                                                       admin_user, client, reviewer):
    client.force_login(reviewer)
    assert client.get("/deployments/new/").status_code == 403
    client.force_login(admin_user)
    assert client.get("/deployments/new/").status_code == 200
    form = {"name": "Bear species", "slug": "bears", "client": "bear-app",
            "regions": "north, North, Europe/Oslo\nsouth, South, Africa/Lagos", "labels": "",
            "learner": io.BytesIO(learner.read_bytes()), "reference": io.BytesIO(reference)}

    response = client.post("/deployments/new/", form)

    assert response.status_code == 201, response.content.decode()[:2000]
    page = response.content.decode()
    key = ApiKey.objects.get(user__username="bear-app")
    assert f'<code id="api-key">{key.prefix}.' in page
    assert "shown this once" in page
    models = client.get("/deployments/bears/models/").content.decode()
    assert "20 images, uploaded at registration (one folder per label)" in models
    again = client.post("/deployments/new/", {**form, "regions": "north; North",
                                             "learner": io.BytesIO(b"x"),
                                             "reference": io.BytesIO(reference)})
    assert again.status_code == 400
    assert "line 1: write code, name, time zone" in again.content.decode()
