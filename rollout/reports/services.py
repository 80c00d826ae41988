"""Writes of the reports: a senior reviewer's adjudication of a disagreement."""

from __future__ import annotations

import logging

from django.contrib.auth.models import User
from django.db import transaction

from inference.models import Prediction
from reviewplatform.errors import ServiceError
from reviewplatform.models import Case, Decision
from reviewplatform.nul import nul_refuse

from ..models import Adjudication

logger = logging.getLogger(__name__)

ADJUDICATE_PERM = "reviewplatform.review_escalation"


def case_adjudicate(*, case_id: int, label: str, actor: User, reason: str) -> Adjudication:
    """Record the adjudicated label of a decided case. The Decision stays as it was (it is
    the action that was taken); the retraining export takes the newest adjudication."""
    if not actor.has_perm(ADJUDICATE_PERM):
        raise ServiceError("only senior reviewers adjudicate", field="actor")
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError("say why: the adjudication is audited", field="reason")
    nul_refuse(reason, field="reason")
    with transaction.atomic():
        case = Case.objects.select_related("deployment").filter(pk=case_id).first()
        if case is None:
            raise ServiceError("no such case", field="case")
        if label not in case.deployment.labels:
            raise ServiceError(f"{label!r} is not one of the deployment's labels",
                               field="label")
        decision = Decision.objects.filter(case_id=case_id).first()
        if decision is None:
            raise ServiceError("the case has no decision yet", field="case")
        model_label = (Prediction.objects.champion().filter(case_id=case_id)
                       .values_list("label", flat=True).first()) or ""
        adjudication = Adjudication.objects.create(
            case=case, label=label, decision_label=decision.label, model_label=model_label,
            actor=actor, reason=reason)
    logger.info("case %s adjudicated %s by %s (decision %s, model %s)", case_id, label,
                actor.username, decision.label, model_label or "-")
    return adjudication
