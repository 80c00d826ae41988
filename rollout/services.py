"""Writes for rollout policies, and the routing of predicted cases."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from inference.models import Prediction
from reviewplatform.models import Case, Decision, Deployment, ReviewTask

from . import routing
from .models import PolicyVersion, Stage
from .selectors import policy_current


def policy_publish(
    *,
    deployment: Deployment,
    stage: str,
    rules: list[dict[str, Any]],
    actor: User | None,
    reason: str,
    confidence_threshold: float = 0.9,
    audit_rate: float = 0.05,
) -> PolicyVersion:
    """Publish a new immutable policy version; it takes effect for cases routed from now on."""
    from reviewplatform.errors import ServiceError

    if stage not in Stage.values:
        raise ServiceError(f"unknown stage {stage!r}", field="stage")
    if not reason.strip():
        raise ServiceError("a policy change needs a reason", field="reason")
    if not 0 <= confidence_threshold <= 1:
        raise ServiceError("confidence_threshold must be between 0 and 1",
                           field="confidence_threshold")
    if not 0 <= audit_rate <= 1:
        raise ServiceError("audit_rate must be between 0 and 1", field="audit_rate")
    with transaction.atomic():
        # Lock the deployment row so that two publishers get consecutive version numbers.
        Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
        latest = deployment.policy_versions.aggregate(n=Max("version"))["n"] or 0
        return PolicyVersion.objects.create(
            deployment=deployment, version=latest + 1, stage=stage, rules=rules,
            confidence_threshold=confidence_threshold, audit_rate=audit_rate, author=actor,
            reason=reason,
        )


def case_route(*, case_id: int) -> None:
    """Route a predicted case: the model's decision stands, or a review task is queued.

    Idempotent by state: only a case still `received` is routed, under its row lock.
    """
    with transaction.atomic():
        case = (Case.objects.select_for_update(of=("self",)).select_related("region")
                .filter(pk=case_id, status=Case.Status.RECEIVED).first())
        if case is None:
            return
        policy = policy_current(deployment_id=case.deployment_id)
        champion = (Prediction.objects.filter(case=case, model_version__is_champion=True,
                                              status=Prediction.Status.OK).first())
        outcome = routing.route(
            routing.CaseFacts(region=case.region.code),
            routing.ChampionAnswer(label=champion.label if champion else None,
                                   confidence=champion.confidence if champion else None,
                                   out_of_domain=champion.out_of_domain if champion else False),
            routing.Policy(stage=policy.stage, rules=policy.rules,
                           confidence_threshold=policy.confidence_threshold),
        )
        if outcome.model_decides and champion is not None:
            Decision.objects.create(case=case, label=champion.label,
                                    source=Decision.Source.MODEL, policy_version=policy,
                                    rule=outcome.rule, prediction=champion)
            case.status = Case.Status.DECIDED
        else:
            ReviewTask.objects.create(case=case, reason=outcome.reason, policy_version=policy,
                                      rule=outcome.rule)
            case.status = Case.Status.IN_REVIEW
        case.save(update_fields=["status", "updated_at"])
