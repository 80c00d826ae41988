"""The disagreements gallery shows each case's nearest reference images (by the compared
model's features) with their labels, in one statement per page; reference images are served
to staff who may see model versions."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext

from inference.models import Prediction, ReferenceImage, ReferenceSet
from rollout.reports.disagreements import disagreements
from rollout.reports.filters import report_filters_parse
from tests.conftest import png_bytes
from tests.reports_factory import decide, sim_model

DAY = datetime(2026, 5, 1, 10, 0, tzinfo=ZoneInfo("Europe/Oslo"))
# name -> (label, features): around the axes of a three-dimensional feature space.
REFERENCES = {"a": ("1", [1.0, 0.0, 0.0]), "b": ("7", [1.0, 1.0, 0.0]),
              "c": ("4", [0.0, 1.0, 0.0]), "d": ("9", [0.0, 0.0, 1.0]),
              "e": ("1", [-1.0, 0.0, 0.0])}


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def model(deployment):
    return sim_model(deployment)


@pytest.fixture
def references(model) -> dict[str, ReferenceImage]:
    """The model's reference set, its features fitted for the model's artifact."""
    reference = ReferenceSet.objects.create(model_version=model, origin="upload", size=5,
                                            by_label={}, detector_sha256=model.sha256)
    images = {}
    for n, (name, (label, features)) in enumerate(REFERENCES.items()):
        image = ReferenceImage(reference_set=reference, label=label, features=features)
        image.image.save(f"references/{name}.png",
                         ContentFile(png_bytes(color=f"#{n * 40:02x}2040")), save=False)
        image.save()
        images[name] = image
    return images


@pytest.fixture
def disagreeing(deployment, model, client_user, reviewer):
    """Disagreements whose model features are set, the most confident first."""
    def make(features: list[float] | None, confidence: float):
        case = decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                      captured_at=DAY, model_label="7", human="1", confidence=confidence)
        Prediction.objects.filter(case=case).update(features=features)
        return case
    return make


def nearest_shown(page: str) -> dict[int, list[tuple[int, str]]]:
    """case id -> (reference image id, label) of its nearest reference images, as shown."""
    return {int(case): [(int(pk), label) for pk, label in re.findall(
                r'<figure data-reference="(\d+)">.*?class="reference-label">([^<]+)</strong>',
                block, flags=re.S)]
            for case, block in re.findall(
                r'<div class="references" data-case="(\d+)">(.*?)</div>', page, flags=re.S)}


def test_each_case_gets_its_nearest_reference_images_nearest_first(
        deployment, references, disagreeing):
    first = disagreeing([1.0, 0.2, 0.0], 0.99)
    second = disagreeing([0.0, 0.1, 1.0], 0.9)
    without = disagreeing(None, 0.8)  # a prediction without features: nothing to compare
    f = report_filters_parse(deployment=deployment, params=QueryDict(""))

    items = {d.case_id: d for d in disagreements(f)}

    a, b, c, d = (references[name].pk for name in "abcd")
    assert [(r.image_id, r.label) for r in items[first.pk].references] == [
        (a, "1"), (b, "7"), (c, "4")]
    assert [r.distance for r in items[first.pk].references] == pytest.approx(
        [1 - 1 / 1.04 ** 0.5, 1 - 1.2 / (2 * 1.04) ** 0.5, 1 - 0.2 / 1.04 ** 0.5])
    assert [(r.image_id, r.label) for r in items[second.pk].references] == [
        (d, "9"), (c, "4"), (b, "7")]
    assert items[without.pk].references == ()


def test_reference_features_of_another_artifact_are_not_compared(
        deployment, model, references, disagreeing):
    case = disagreeing([1.0, 0.2, 0.0], 0.99)
    ReferenceSet.objects.filter(model_version=model).update(detector_sha256="1" * 64)
    f = report_filters_parse(deployment=deployment, params=QueryDict(""))

    [item] = disagreements(f)

    assert (item.case_id, item.references) == (case.pk, ())


def test_the_gallery_shows_the_labels_and_images_to_an_admin(
        client, admin_user, references, disagreeing):
    first = disagreeing([1.0, 0.2, 0.0], 0.99)
    second = disagreeing([0.0, 0.1, 1.0], 0.9)
    client.force_login(admin_user)

    page = client.get("/deployments/digits/report/disagreements/").content.decode()

    a, b, c, d = (references[name].pk for name in "abcd")
    assert nearest_shown(page) == {first.pk: [(a, "1"), (b, "7"), (c, "4")],
                                   second.pk: [(d, "9"), (c, "4"), (b, "7")]}
    for pk in (a, b, c, d):
        assert f'src="/references/{pk}/image/"' in page


def test_a_senior_sees_the_labels_without_the_images(client, references, disagreeing):
    case = disagreeing([1.0, 0.2, 0.0], 0.99)
    senior = User.objects.create_user("senior", password="senior-password")
    senior.groups.set(Group.objects.filter(name="senior reviewer"))
    client.force_login(senior)

    page = client.get("/deployments/digits/report/disagreements/").content.decode()

    assert nearest_shown(page) == {case.pk: [(references["a"].pk, "1"),
                                             (references["b"].pk, "7"),
                                             (references["c"].pk, "4")]}
    assert "/references/" not in page


def test_the_gallery_finds_every_cases_neighbours_in_one_statement(
        client, admin_user, references, disagreeing):
    client.force_login(admin_user)

    def statements(cases: int) -> tuple[int, int]:
        for n in range(cases):
            disagreeing([1.0, n / 10, 0.0], 0.5 + n / 100)
        with CaptureQueriesContext(connection) as queries:
            page = client.get("/deployments/digits/report/disagreements/").content.decode()
        assert page.count('<div class="references"') == len(nearest_shown(page))
        reading = [q for q in queries.captured_queries
                   if "inference_referenceimage" in q["sql"]]
        return len(queries), len(reading)

    few, reads = statements(2)
    assert reads == 1
    assert statements(10) == (few, 1)  # twelve cases now: the same statements


# --- the reference image itself -------------------------------------------------------------


def _staff(username: str, group: str, *, staff: bool = True) -> User:
    user = User.objects.create_user(username, is_staff=staff)
    user.groups.set(Group.objects.filter(name=group))
    return user


@pytest.mark.parametrize("group", ["rollout admin", "model admin"])
def test_it_serves_a_reference_image_to_staff_who_see_models(client, references, group):
    image = references["b"]
    client.force_login(_staff(group.replace(" ", "-"), group))

    response = client.get(f"/references/{image.pk}/image/")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == image.image.open("rb").read()
    assert response["Cache-Control"] == "private, max-age=3600"


@pytest.mark.parametrize("who", ["reviewer", "senior reviewer", "api client",
                                 "not staff"])
def test_it_refuses_a_reference_image_to_others(client, references, who):
    user = (_staff("admin-not-staff", "rollout admin", staff=False) if who == "not staff"
            else _staff(who.replace(" ", "-"), who, staff=False))
    client.force_login(user)

    response = client.get(f"/references/{references['a'].pk}/image/")

    assert response.status_code == 403


def test_it_asks_an_anonymous_visitor_to_log_in(client, references):
    response = client.get(f"/references/{references['a'].pk}/image/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_it_answers_404_for_an_unknown_or_missing_reference_image(client, admin_user,
                                                                  references):
    client.force_login(admin_user)
    image = references["c"]
    image.image.storage.delete(image.image.name)

    assert client.get("/references/999999/image/").status_code == 404
    assert client.get(f"/references/{image.pk}/image/").status_code == 404
    assert ReferenceImage.objects.filter(pk=image.pk).exists()  # nothing else changed
