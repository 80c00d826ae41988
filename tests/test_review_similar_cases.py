"""Similar cases people already decided, on the review page: nearest first by the champion's
features, and only once the model's answer is shown (never before a blind answer)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from inference.models import Prediction
from review.selectors import similar_decided_cases
from reviewplatform.models import Case, Decision, GoldCase, ReviewMode, ReviewTask
from rollout.selectors import policy_current
from rollout.services import deployment_create
from tests.conftest import REGIONS
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


def shown_similar(page: str) -> list[tuple[int, str]]:
    """(case id, label) of each similar case on the page, in the order shown."""
    match = re.search(r'<div id="similar-cases">(.*?)</div>\s*</div>', page, flags=re.S)
    if match is None:
        return []
    return [(int(pk), label) for pk, label in re.findall(
        r'<figure data-case="(\d+)">.*?class="similar-label">([^<]+)</strong>', match.group(1),
        flags=re.S)]


@pytest.fixture
def decided(make_case, stored_champion):
    """A case decided by `source` with `label`, the champion's features set to `features`."""
    def make(label: str, features: list[float], *, source: str = Decision.Source.HUMAN,
             **case_kwargs) -> Case:
        case = make_case(**case_kwargs)
        Case.objects.filter(pk=case.pk).update(status=Case.Status.DECIDED)
        champion = case.deployment.model_versions.get(is_champion=True)
        Prediction.objects.create(case=case, model_version=champion, status="ok", label=label,
                                  confidence=0.9, features=features)
        Decision.objects.create(case=case, label=label, source=source,
                                policy_version=policy_current(deployment_id=case.deployment_id))
        return case
    return make


@pytest.fixture
def neighbourhood(decided, make_case, stored_champion, admin_user, client_user):
    """Decided cases around the direction (1, 0, 0), the nearest first, and cases that must
    never be shown although near: decided by the model, served as gold, undecided, in another
    deployment, their image deleted."""
    nearest = [decided("1", [1.0, 0.1, 0.0]), decided("7", [1.0, 0.5, 0.0]),
               decided("1", [1.0, 1.0, 0.0]), decided("4", [0.0, 1.0, 0.0])]
    decided("9", [-1.0, 0.0, 0.0])  # the farthest: a fifth, past the four shown
    decided("3", [1.0, 0.0, 0.0], source=Decision.Source.MODEL)
    gold = decided("2", [1.0, 0.01, 0.0])
    GoldCase.objects.create(case=gold, label="2")
    undecided = make_case()
    Prediction.objects.create(case=undecided, model_version=stored_champion, status="ok",
                              label="5", confidence=0.9, features=[1.0, 0.0, 0.0])
    deleted = decided("6", [1.0, 0.02, 0.0])
    Case.objects.filter(pk=deleted.pk).update(image_deleted_at=deleted.created_at)
    other = deployment_create(slug="other", name="Other", labels=["1", "2"], regions=REGIONS,
                              actor=admin_user)
    type(stored_champion).objects.create(deployment=other, name="champion", sha256="0" * 64,
                                         artifact="models/o.pkl", labels=["1", "2"],
                                         is_champion=True)
    decided("2", [1.0, 0.0, 0.0], deployment=other)
    return [(case.pk, Prediction.objects.get(case=case).label) for case in nearest]


def queued_with_features(enqueue, features=(1.0, 0.0, 0.0)) -> ReviewTask:
    task = enqueue(says="1", confidence=0.8)
    Prediction.objects.filter(case=task.case).update(features=list(features))
    return task


def claim_page(client: Client) -> tuple[ReviewTask, str]:
    location = client.post("/review/next/")["Location"]
    task = ReviewTask.objects.get(pk=int(location.rstrip("/").split("/")[-1]))
    return task, client.get(location).content.decode()


def test_it_finds_the_nearest_human_decisions_in_order(neighbourhood, enqueue, deployment):
    task = queued_with_features(enqueue)

    similar = similar_decided_cases(case_id=task.case_id, deployment_id=deployment.pk)

    assert [(s.case_id, s.label) for s in similar] == neighbourhood
    # Cosine distances of (1, 0, 0) to each: 1 - cos of the angle.
    expected = [1 - 1 / (1 + 0.01) ** 0.5, 1 - 1 / 1.25 ** 0.5, 1 - 1 / 2 ** 0.5, 1.0]
    assert [s.distance for s in similar] == pytest.approx(expected, abs=1e-6)


def test_it_finds_none_without_the_champions_features_for_the_case(neighbourhood, enqueue,
                                                                    deployment):
    task = enqueue(says="1")

    assert similar_decided_cases(case_id=task.case_id, deployment_id=deployment.pk) == []


@pytest.mark.parametrize("who, linked, case_page", [
    # A reviewer opens only the case pages of cases they reviewed: no link to a 404.
    ("reviewer", False, 404),
    # Those who may read decisions get links to the case pages.
    ("admin_user", True, 200),
])
def test_the_assisted_page_shows_them_nearest_first(neighbourhood, enqueue, deployment, client,
                                                     request, who, linked, case_page):
    deployment.review_mode = ReviewMode.ASSISTED
    deployment.save()
    queued_with_features(enqueue)
    client.force_login(request.getfixturevalue(who))

    _, page = claim_page(client)

    assert shown_similar(page) == neighbourhood
    for pk, _ in neighbourhood:
        assert f'src="/cases/{pk}/image/"' in page
        assert (f'href="/cases/{pk}/"' in page) is linked
        assert client.get(f"/cases/{pk}/").status_code == case_page


def test_a_blind_page_shows_none(neighbourhood, enqueue, deployment, reviewer, client):
    assert deployment.review_mode == ReviewMode.BLIND
    queued_with_features(enqueue)
    client.force_login(reviewer)

    _, page = claim_page(client)

    assert shown_similar(page) == []
    assert 'id="similar-cases"' not in page
    for pk, _ in neighbourhood:
        assert f"/cases/{pk}/" not in page


def test_blind_then_reveal_shows_them_only_after_the_blind_answer(
        neighbourhood, enqueue, deployment, reviewer, client):
    deployment.review_mode = ReviewMode.REVEALED
    deployment.save()
    queued_with_features(enqueue)
    client.force_login(reviewer)
    task, page = claim_page(client)
    assert 'id="similar-cases"' not in page  # the blind step

    response = client.post(f"/review/tasks/{task.pk}/answer/",
                           {"lease_token": str(task.lease_token), "answer": "7"})
    assert response["Location"] == f"/review/tasks/{task.pk}/"
    page = client.get(response["Location"]).content.decode()

    assert 'id="blind-answer"' in page  # the revealed step
    assert shown_similar(page) == neighbourhood
