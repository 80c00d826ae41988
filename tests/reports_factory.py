"""Rows for the report tests, written directly: a case, what the model said, what people did."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

from django.utils import timezone

from inference.models import ModelVersion, Prediction
from reviewplatform.models import Case, Decision, Review, ReviewTask
from rollout.selectors import policy_current

_ids = itertools.count()


def sim_model(deployment, name="sim", champion=True) -> ModelVersion:
    return ModelVersion.objects.create(deployment=deployment, name=name, sha256="0" * 64,
                                       artifact=f"models/{name}.pkl", labels=deployment.labels,
                                       is_champion=champion)


def decide(deployment, model, *, submitted_by, reviewer, captured_at: datetime,
           model_label: str, human: str | None, region="north", confidence=0.9, ood=False,
           reason="shadow", source="human", rule="", audit: str | None = None,
           wait_s: float = 60.0, seconds: float = 12.0, image="cases/x.png") -> Case:
    """A decided case. `source="model"`: the model's label stands (and `audit`, if given, is
    a blind audit answer); otherwise `human` decided after a review task with `reason`."""
    n = next(_ids)
    case = Case.objects.create(
        deployment=deployment, region=deployment.regions.get(code=region),
        external_id=f"r-{n}", image=image, image_sha256="0" * 64, width=8, height=8,
        captured_at=captured_at, submitted_by=submitted_by, status=Case.Status.DECIDED)
    prediction = None
    if model_label:
        prediction = Prediction.objects.create(
            case=case, model_version=model, status=Prediction.Status.OK, label=model_label,
            confidence=confidence, out_of_domain=ood, latency_ms=40.0)
    policy = policy_current(deployment_id=deployment.pk)

    def review(task_reason: str, answer: str) -> Review:
        created = timezone.now()
        task = ReviewTask.objects.create(
            case=case, reason=task_reason, status=ReviewTask.Status.DONE,
            policy_version=policy, rule=rule, claimed_by=reviewer,
            claimed_at=created + timedelta(seconds=wait_s), completed_at=created)
        ReviewTask.objects.filter(pk=task.pk).update(created_at=created)
        return Review.objects.create(task=task, case=case, reviewer=reviewer, answer=answer,
                                     seconds=seconds)

    if source == "model":
        Decision.objects.create(case=case, label=model_label, source="model",
                                policy_version=policy, rule=rule, prediction=prediction)
        if audit is not None:
            review(ReviewTask.Reason.AUDIT, audit)
    else:
        assert human is not None
        first = review(reason, human)
        Decision.objects.create(case=case, label=human, source="human", policy_version=policy,
                                rule=rule, review=first)
    return case


def second_opinion(case: Case, reviewer, answer: str) -> Review:
    first = Review.objects.filter(case=case).earliest("created_at")
    task = ReviewTask.objects.create(case=case, reason=ReviewTask.Reason.SECOND_OPINION,
                                     status=ReviewTask.Status.DONE,
                                     policy_version=first.task.policy_version, follows=first,
                                     claimed_by=reviewer, claimed_at=timezone.now())
    return Review.objects.create(task=task, case=case, reviewer=reviewer, answer=answer,
                                 seconds=5.0)
