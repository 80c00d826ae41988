"""The edges of a case's life before routing: a deployment always has a policy to route by,
and cases that wait too long before routing are reported to the admins."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from inference.demo_model import DIGIT_LABELS
from inference.models import ModelVersion, Prediction
from reviewplatform.models import Case, Deployment
from reviewplatform.tasks import cases_stuck_check
from rollout.models import PolicyVersion
from rollout.services import deployment_create
from tests.conftest import CAPTURED_AT


@pytest.mark.django_db(transaction=True)
def test_the_database_refuses_a_deployment_without_a_policy_version(admin_user):
    refused = pytest.raises(IntegrityError, match="deployment bare has no policy version")
    with refused, transaction.atomic():
        Deployment.objects.create(slug="bare", name="No policy", labels=["a", "b"])
        # Deferred: checked when the transaction commits, not at the insert.
        assert Deployment.objects.filter(slug="bare").exists()
    assert not Deployment.objects.filter(slug="bare").exists()

    created = deployment_create(slug="digits", name="Digits", labels=DIGIT_LABELS,
                                regions=[("north", "North", "Europe/Oslo")], actor=admin_user)

    stored = Deployment.objects.get(slug="digits")
    assert stored.pk == created.pk
    assert list(PolicyVersion.objects.filter(deployment=stored).values_list(
        "version", "stage", "rules", "author")) == [(1, "shadow", [], admin_user.pk)]


@pytest.fixture
def stuck(deployment, client_user, settings):
    """One case received longer ago than the alert threshold, beside cases that do not count:
    a fresh received one and an old one already in review."""
    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]
    settings.ROLLOUT_ALERT_WEBHOOK_URL = ""
    old = timezone.now() - timedelta(seconds=settings.CASE_STUCK_ALERT_SECONDS + 60)
    cases = {}
    for name, status in (("stuck", Case.Status.RECEIVED), ("fresh", Case.Status.RECEIVED),
                         ("reviewed", Case.Status.IN_REVIEW)):
        cases[name] = Case.objects.create(
            deployment=deployment, region=deployment.regions.get(code="north"),
            external_id=name, image="cases/x.png", image_sha256="0" * 64, width=8, height=8,
            captured_at=CAPTURED_AT, submitted_by=client_user, status=status)
    Case.objects.filter(external_id__in=["stuck", "reviewed"]).update(created_at=old)
    return cases["stuck"]


def test_it_alerts_the_admins_once_about_cases_stuck_before_routing(stuck, settings):
    assert cases_stuck_check() == 1

    (email,) = mail.outbox
    minutes = settings.CASE_STUCK_ALERT_SECONDS / 60
    assert email.to == ["ops@example.com"]
    assert email.subject == (f"[rollout] 1 case(s) waiting before routing for over "
                             f"{minutes:g} min; no worker is predicting")
    assert f"oldest: case {stuck.pk}" in email.body
    assert "By deployment: digits: 1." in email.body
    assert "No worker has stored a prediction yet: is a worker running?" in email.body

    # Within the repeat period: still counted, not mailed again.
    assert cases_stuck_check() == 1
    assert len(mail.outbox) == 1


def test_it_sends_no_alert_when_no_case_is_stuck(deployment, settings):
    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]

    assert cases_stuck_check() == 0
    assert mail.outbox == []


def test_the_team_page_shows_the_stuck_cases(client, stuck, admin_user, reviewer, settings):
    client.force_login(reviewer)
    assert client.get(reverse("review-team")).status_code == 403
    client.force_login(admin_user)

    response = client.get(reverse("review-team"))

    assert response.status_code == 200
    minutes = settings.CASE_STUCK_ALERT_SECONDS // 60
    paragraph = re.search(r'<p id="stuck">(.*?)</p>', response.content.decode(), flags=re.S)
    assert paragraph is not None
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", "", paragraph.group(1))))
    assert text == (f"1 case(s) have waited before routing for over {minutes} minutes "
                    f"(digits: 1; oldest: case {stuck.pk}, received 11 minutes ago). "
                    "The admins have been alerted.")


@pytest.mark.parametrize("minutes_ago, subject_end, words", [
    (60, "; no worker is predicting", "No worker has predicted since"),
    (1, " min", "A worker predicted at"),
])
def test_the_stuck_alert_says_when_a_worker_last_predicted(stuck, settings, minutes_ago,
                                                           subject_end, words):
    version = ModelVersion.objects.create(deployment=stuck.deployment, name="v", sha256="0",
                                          artifact="models/v.pkl", labels=DIGIT_LABELS)
    other = Case.objects.exclude(pk=stuck.pk).first()
    prediction = Prediction.objects.create(case=other, model_version=version, status="ok",
                                           label="1", confidence=0.9)
    at = timezone.now() - timedelta(minutes=minutes_ago)
    Prediction.objects.filter(pk=prediction.pk).update(created_at=at)

    cases_stuck_check()

    (email,) = mail.outbox
    assert email.subject.endswith(subject_end)
    assert f"{words} {at:%Y-%m-%d %H:%M} UTC" in email.body
