"""One bad case never blocks the others: a case that cannot be routed goes to reviewers on its
own, with the reason, and the rest of its batch carries on."""

from __future__ import annotations

import logging

import pytest

from inference.demo_model import DIGIT_LABELS
from inference.models import ModelVersion, Prediction
from reviewplatform import pipeline
from reviewplatform.models import Case, Decision, Region, ReviewTask
from rollout.selectors import policy_current
from rollout.services import deployment_create, policy_publish
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


@pytest.fixture
def other(admin_user):
    """A second deployment, in shadow stage, with its own champion row."""
    other = deployment_create(slug="other", name="Other digits", labels=DIGIT_LABELS,
                              regions=[("mars", "Mars", "UTC"), ("earth", "Earth", "UTC")],
                              actor=admin_user)
    ModelVersion.objects.create(deployment=other, name="champion", artifact="models/o.pkl",
                                sha256="1" * 64, labels=DIGIT_LABELS, is_champion=True)
    return other


def test_a_case_that_cannot_be_routed_goes_to_reviewers_and_the_batch_carries_on(
        deployment, other, admin_user, received, fake_learner, caplog):
    full = policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                          reason="the model decides", confidence_threshold=0.9,
                          audit_rate=0.0)
    decided = [received(region="north"), received(region="east")]
    shadow = received(deployment=other, region="earth")
    bad = received(deployment=other, region="mars")
    # A time zone that is no longer known (written past validation): routing it raises.
    Region.objects.filter(deployment=other, code="mars").update(timezone="Mars/Olympus")

    with caplog.at_level(logging.ERROR, logger="rollout.routes"):
        taken = pipeline.predict_waiting(batch_size=32, wait_ms=0)

    assert taken == 4
    assert sorted(fake_learner) == [2, 2]  # one forward pass per deployment
    assert Prediction.objects.filter(status="ok").count() == 4
    assert not Case.objects.filter(status=Case.Status.RECEIVED).exists()
    # The working deployment: the model decided both of its cases.
    for case in decided:
        case.refresh_from_db()
        decision = Decision.objects.get(case=case)
        assert (case.status, decision.source, decision.label, decision.policy_version_id) == (
            Case.Status.DECIDED, "model", "7", full.pk)
        assert not ReviewTask.objects.filter(case=case).exists()
    # The other deployment: its good region routed as usual, its bad one to reviewers.
    shadow_policy = policy_current(deployment_id=other.pk)
    shadow.refresh_from_db()
    assert shadow.status == Case.Status.IN_REVIEW
    assert list(ReviewTask.objects.filter(case=shadow).values_list(
        "reason", "policy_version_id")) == [(ReviewTask.Reason.SHADOW, shadow_policy.pk)]
    bad.refresh_from_db()
    assert bad.status == Case.Status.IN_REVIEW
    assert list(ReviewTask.objects.filter(case=bad).values_list(
        "reason", "policy_version_id", "status")) == [
        (ReviewTask.Reason.ROUTING_FAILED, shadow_policy.pk, ReviewTask.Status.OPEN)]
    assert not Decision.objects.filter(case__in=[shadow, bad]).exists()
    failures = [r for r in caplog.records if r.name == "rollout.routes"]
    assert [r.getMessage() for r in failures] == [
        f"case {bad.pk} could not be routed; it goes to reviewers"]
    assert "Mars/Olympus" in failures[0].exc_text
