"""The models page of a deployment: who sees it, registering an uploaded learner, promoting and
retiring versions, all through the Django test client."""

from __future__ import annotations

import hashlib
import html
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from inference.models import ModelVersion, ModelVersionEvent
from inference.services import model_version_register
from reviewplatform.models import Case
from reviewplatform.pipeline import case_predict
from reviewplatform.services import case_submit
from rollout.services import deployment_create
from tests.conftest import CAPTURED_AT

PAGE = "/deployments/digits/models/"
REGISTER = "/deployments/digits/models/register/"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def challenger(deployment, trained_model, admin_user) -> ModelVersion:
    return model_version_register(deployment=deployment, path=trained_model.path,
                                  name="challenger", actor=admin_user)


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def learner_upload(path: Path) -> SimpleUploadedFile:
    return SimpleUploadedFile("export.pkl", path.read_bytes(),
                              content_type="application/octet-stream")


def text(response) -> str:
    return html.unescape(response.content.decode())


def predictions_column(page: str, version: str) -> int:
    """The 'predictions' figure in a version's row of the table."""
    row = re.search(rf'<tr data-version="{version}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {version}"
    return int(re.findall(r'<td class="num">([^<]*)</td>', row.group(1))[0])


def role_column(page: str, version: str) -> str:
    row = re.search(rf'<tr data-version="{version}">(.*?)</tr>', page, re.S)
    assert row, f"no row for {version}"
    return re.sub(r"<[^>]+>", "", re.findall(r"<td>(.*?)</td>", row.group(1), re.S)[1]).strip()


def nothing_stored() -> bool:
    return not (Path(settings.MEDIA_ROOT) / "models").exists()


# --- viewing --------------------------------------------------------------------------------


def test_it_asks_an_anonymous_visitor_to_log_in(deployment):
    response = Client().get(PAGE)

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_forbids_the_page_to_an_outsider(deployment, outsider):
    assert login(outsider).get(PAGE).status_code == 403


def test_it_lists_every_version_with_its_prediction_count(champion, deployment, client_user,
                                                          make_upload, digit_files,
                                                          admin_user, trained_model,
                                                          django_capture_on_commit_callbacks):
    def submit_and_predict(path: Path, external_id: str) -> None:
        with django_capture_on_commit_callbacks(execute=False):
            case = case_submit(deployment=deployment, region_code="north",
                               image=make_upload(path), captured_at=CAPTURED_AT,
                               external_id=external_id, submitted_by=client_user)
        case_predict(case_id=case.pk)

    submit_and_predict(digit_files["1"][0], "before-1")
    submit_and_predict(digit_files["2"][0], "before-2")
    model_version_register(deployment=deployment, path=trained_model.path, name="challenger",
                           actor=admin_user)
    submit_and_predict(digit_files["3"][0], "after-1")
    assert Case.objects.count() == 3

    response = login(admin_user).get(PAGE)

    assert response.status_code == 200
    page = text(response)
    assert predictions_column(page, "champion") == 3
    assert predictions_column(page, "challenger") == 1
    assert role_column(page, "champion") == "champion"
    assert role_column(page, "challenger") == "challenger"
    assert 'action="/deployments/digits/models/register/"' in page


def test_it_hides_the_register_form_from_a_viewer_without_the_permission(champion, challenger,
                                                                         reviewer):
    from django.contrib.auth.models import Permission

    reviewer.user_permissions.add(Permission.objects.get(codename="view_modelversion"))

    response = login(reviewer).get(PAGE)

    assert response.status_code == 200
    assert 'action="/deployments/digits/models/register/"' not in text(response)
    assert predictions_column(text(response), "challenger") == 0
    assert "/promote/" not in text(response)


# --- registering ----------------------------------------------------------------------------


def test_it_registers_an_uploaded_learner(champion, admin_user, trained_model):
    response = login(admin_user).post(REGISTER, {
        "artifact": learner_upload(trained_model.path), "name": "uploaded",
        "notes": "from the page"})

    assert response.status_code == 302
    assert response["Location"] == PAGE
    version = ModelVersion.objects.get(name="uploaded")
    assert version.sha256 == hashlib.sha256(trained_model.path.read_bytes()).hexdigest()
    assert hashlib.sha256(Path(version.artifact.path).read_bytes()).hexdigest() == version.sha256
    assert not version.is_champion and version.is_active
    assert version.created_by == admin_user
    assert version.notes == "from the page"
    event = ModelVersionEvent.objects.get(model_version=version)
    assert (event.action, event.actor) == ("registered", admin_user)


def test_it_registers_an_uploaded_learner_as_the_new_champion(champion, admin_user,
                                                              trained_model):
    response = login(admin_user).post(REGISTER, {
        "artifact": learner_upload(trained_model.path), "name": "uploaded", "champion": "on"})

    assert response.status_code == 302
    assert ModelVersion.objects.get(is_champion=True).name == "uploaded"
    champion.refresh_from_db()
    assert champion.is_active and not champion.is_champion


@pytest.mark.parametrize("who", ["reviewer", "client_user"])
def test_it_lets_only_staff_with_the_permission_register(deployment, trained_model, who,
                                                         request):
    user = request.getfixturevalue(who)

    response = login(user).post(REGISTER, {"artifact": learner_upload(trained_model.path),
                                           "name": "sneaky"})

    assert response.status_code == 403
    assert not ModelVersion.objects.exists()
    assert nothing_stored()


def test_it_refuses_a_model_admin_who_is_not_staff(deployment, trained_model, outsider):
    from django.contrib.auth.models import Group

    outsider.groups.set(Group.objects.filter(name="model admin"))
    assert outsider.has_perm("inference.register_modelversion")

    response = login(outsider).post(REGISTER, {"artifact": learner_upload(trained_model.path),
                                               "name": "not-staff"})

    assert response.status_code == 403
    assert not ModelVersion.objects.exists()


def test_it_lets_a_staff_model_admin_register(deployment, trained_model, outsider):
    from django.contrib.auth.models import Group

    outsider.groups.set(Group.objects.filter(name="model admin"))
    outsider.is_staff = True
    outsider.save()

    response = login(outsider).post(REGISTER, {"artifact": learner_upload(trained_model.path),
                                               "name": "by-model-admin"})

    assert response.status_code == 302
    assert ModelVersion.objects.get().created_by == outsider


def test_it_refuses_a_file_that_is_not_a_learner(deployment, admin_user):
    upload = SimpleUploadedFile("notes.txt", b"just some text, not a pickle\n",
                                content_type="text/plain")

    response = login(admin_user).post(REGISTER, {"artifact": upload, "name": "text"})

    assert response.status_code == 400
    assert "not a loadable fastai learner" in text(response)
    assert not ModelVersion.objects.exists()
    assert nothing_stored()


def test_it_refuses_a_learner_for_other_labels_and_names_the_difference(admin_user,
                                                                        trained_model):
    deployment_create(slug="pets", name="Pets", labels=["cat", "dog"],
                      regions=[("north", "North", "Europe/Oslo")], actor=admin_user)

    response = login(admin_user).post("/deployments/pets/models/register/", {
        "artifact": learner_upload(trained_model.path), "name": "digits"})

    assert response.status_code == 400
    page = text(response)
    assert "missing ['cat', 'dog']" in page
    assert "unexpected ['0', '1', '2'" in page
    assert not ModelVersion.objects.exists()
    assert nothing_stored()


def test_it_refuses_a_second_version_with_a_taken_name(champion, admin_user, trained_model):
    response = login(admin_user).post(REGISTER, {
        "artifact": learner_upload(trained_model.path), "name": "champion"})

    assert response.status_code == 409
    assert ModelVersion.objects.count() == 1


# --- promoting and retiring -----------------------------------------------------------------


def test_it_needs_a_reason_to_promote(champion, challenger, admin_user):
    response = login(admin_user).post(f"/models/{challenger.pk}/promote/", {"reason": "  "})

    assert response.status_code == 400
    page = text(response)
    assert f"Promoting {challenger.name} needs a reason: nothing changed." in page
    assert "<h2>History</h2>" in page  # the models page, with its way back
    assert ModelVersion.objects.get(is_champion=True) == champion
    assert not ModelVersionEvent.objects.filter(action="promoted").exists()


def test_it_promotes_a_challenger_and_shows_it_in_the_history(champion, challenger,
                                                              admin_user):
    client = login(admin_user)

    response = client.post(f"/models/{challenger.pk}/promote/",
                           {"reason": "agrees more often with reviewers"})

    assert response.status_code == 302
    assert response["Location"] == PAGE
    assert ModelVersion.objects.get(is_champion=True) == challenger
    page = text(client.get(PAGE))
    assert role_column(page, "challenger") == "champion"
    assert role_column(page, "champion") == "challenger"
    assert "challenger is now the champion." in page
    history = page.split("<h2>History</h2>")[1]
    assert "promoted to champion" in history
    assert "demoted to challenger" in history
    assert "agrees more often with reviewers" in history
    assert "admin" in history


def test_it_forbids_a_reviewer_to_promote(champion, challenger, reviewer):
    response = login(reviewer).post(f"/models/{challenger.pk}/promote/", {"reason": "mine"})

    assert response.status_code == 403
    assert ModelVersion.objects.get(is_champion=True) == champion


def test_it_shows_why_the_champion_cannot_be_promoted_again(champion, admin_user):
    client = login(admin_user)

    response = client.post(f"/models/{champion.pk}/promote/", {"reason": "again"}, follow=True)

    assert response.status_code == 200
    assert "already the champion" in text(response)
    assert not ModelVersionEvent.objects.filter(action="promoted").exists()


def test_it_retires_and_reactivates_a_challenger(champion, challenger, admin_user):
    client = login(admin_user)
    url = f"/models/{challenger.pk}/active/"

    response = client.post(url, {"active": "0", "reason": "too slow"})

    assert response.status_code == 302
    assert not ModelVersion.objects.get(pk=challenger.pk).is_active
    page = text(client.get(PAGE))
    assert role_column(page, "challenger") == "retired"
    assert "too slow" in page.split("<h2>History</h2>")[1]

    client.post(url, {"active": "1", "reason": "fixed"})

    assert ModelVersion.objects.get(pk=challenger.pk).is_active
    assert role_column(text(client.get(PAGE)), "challenger") == "challenger"
    assert list(ModelVersionEvent.objects.filter(model_version=challenger)
                .exclude(action="registered").order_by("id")
                .values_list("action", "reason")) == [("retired", "too slow"),
                                                      ("reactivated", "fixed")]


def test_it_refuses_to_retire_the_champion(champion, admin_user):
    client = login(admin_user)

    response = client.post(f"/models/{champion.pk}/active/",
                           {"active": "0", "reason": "bored"}, follow=True)

    assert "cannot be retired" in text(response)
    champion.refresh_from_db()
    assert champion.is_active and champion.is_champion


def test_it_needs_a_reason_and_a_clear_choice_to_retire(champion, challenger, admin_user):
    client = login(admin_user)
    url = f"/models/{challenger.pk}/active/"

    assert client.post(url, {"active": "0", "reason": ""}).status_code == 400
    assert client.post(url, {"active": "maybe", "reason": "why not"}).status_code == 400
    assert ModelVersion.objects.get(pk=challenger.pk).is_active


def test_a_damaged_artifact_sends_cases_to_reviewers_and_the_page_and_an_alert_say_so(
        champion, admin_user, client_user, digit_files, settings):
    from django.core import mail

    from inference import predictor
    from reviewplatform.tasks import models_failing_check
    from rollout.services import policy_publish

    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]
    policy_publish(deployment=champion.deployment, stage="full", rules=[], actor=admin_user,
                   reason="the model decides what it is sure of")
    path = Path(champion.artifact.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped on disk
    path.write_bytes(bytes(data))
    predictor.learners_forget_except([])  # a worker that starts now

    image = digit_files["7"][0]
    case = case_submit(deployment=champion.deployment, region_code="north",
                       image=SimpleUploadedFile(image.name, image.read_bytes(), "image/png"),
                       captured_at=CAPTURED_AT, external_id="damaged", submitted_by=client_user)
    case_predict(case_id=case.pk)

    case.refresh_from_db()
    assert case.status == Case.Status.IN_REVIEW
    assert [t.reason for t in case.review_tasks.all()] == ["model_failed"]
    (prediction,) = case.predictions.all()
    assert prediction.status == "failed"
    assert "damaged or was replaced" in prediction.error
    page = text(login(admin_user).get(PAGE))
    assert "failing:" in page and "damaged or was replaced" in page

    assert models_failing_check() == 1
    assert models_failing_check() == 1  # still failing, but told once
    (alert,) = mail.outbox
    assert alert.subject == ("[rollout] model version champion (champion) of Handwritten "
                             "digits is failing: 1 of 1 predictions in 10 min")
    assert "damaged or was replaced" in alert.body and "model_failed" in alert.body
