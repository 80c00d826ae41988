"""What the guardrail reads of a cell: when its scope was published, and the evidence since:
human answers in order, low-confidence reviews, its cases in or out of domain, and the
region's shadow-stage out-of-domain baseline (`rollout.guardrails` judges them)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.db.models import (
    BooleanField,
    CharField,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    Subquery,
    When,
)
from django.db.models import Case as CaseWhen

from inference.models import Prediction
from reviewplatform.models import Decision, Deployment, Review, ReviewTask
from reviewplatform.stats import Proportion, proportion

from . import routing
from .models import PolicyVersion, Stage

AUTOMATED_STAGES = (Stage.LIMITED, Stage.EXPANDING, Stage.FULL)


def cell_scope(version: Mapping[str, Any], rule: str, region: str, regions: list[str]
                ) -> tuple[Any, ...] | None:
    """What a version lets the model do in a cell (None: nothing); equal values mean the
    cell's scope did not change between two versions."""
    stage = version["stage"]
    if stage == Stage.SHADOW:
        kind = "shadow"
    elif stage in AUTOMATED_STAGES:
        kind = "automated"
    else:
        return None
    if [rule, region] in version["paused_cells"]:
        return None
    if stage == Stage.FULL:
        definition: dict[str, Any] | None = {"name": rule} if rule == routing.FULL_RULE else None
    else:
        definition = next((r for r in version["rules"] if r.get("name") == rule), None)
    if definition is None:
        return None
    allowed = (set(definition.get("regions") or regions)
               - set(definition.get("regions_not") or ()))
    if region not in allowed:
        return None
    threshold = definition.get("confidence_threshold", version["confidence_threshold"])
    # The rule's other regions are not this cell's scope: widening a rule to a new region
    # keeps the evidence of the regions it had.
    conditions = {k: v for k, v in definition.items() if k not in ("regions", "regions_not")}
    return (kind, json.dumps(conditions, sort_keys=True), threshold)


def cells_since(deployment: Deployment, cells: list[tuple[str, str]], regions: list[str]
                 ) -> dict[tuple[str, str], datetime | None]:
    """Per cell, when its current scope was published: the oldest version of the unbroken run
    of versions, ending at the current one, that give the cell the same scope."""
    versions = list(PolicyVersion.objects.filter(deployment=deployment).order_by("-version")
                    .values("created_at", "stage", "rules", "confidence_threshold",
                            "paused_cells"))
    since: dict[tuple[str, str], datetime | None] = {}
    for rule, region in cells:
        current = cell_scope(versions[0], rule, region, regions)
        start = versions[0]["created_at"]
        for version in versions[1:]:
            if cell_scope(version, rule, region, regions) != current:
                break
            start = version["created_at"]
        since[(rule, region)] = start
    return since


def cell_answers(*, deployment: Deployment, rule: str, region: str, since: datetime | None,
             until: datetime) -> list[bool]:
    """The cell's human answers to cases the model decided (or would have, in shadow), in the
    order given: agreed with the model or not. "Cannot tell" is no answer."""
    champion = Prediction.objects.champion().filter(case=OuterRef("case")).values("label")[:1]
    answers = (Review.objects
               .filter(task__policy_version__deployment=deployment, task__rule=rule,
                       task__reason__in=[ReviewTask.Reason.SHADOW, ReviewTask.Reason.AUDIT],
                       case__region__code=region, created_at__lte=until)
               .exclude(answer=Review.CANNOT_TELL)
               .annotate(model_label=CaseWhen(
                   When(task__reason=ReviewTask.Reason.AUDIT, then=F("case__decision__label")),
                   default=Subquery(champion), output_field=CharField()))
               .annotate(agreed=ExpressionWrapper(Q(answer=F("model_label")),
                                                  output_field=BooleanField()))
               .order_by("created_at", "id"))
    if since is not None:
        answers = answers.filter(created_at__gte=since)
    return [bool(agreed) for agreed in answers.values_list("agreed", flat=True)]


def cell_unsure(*, deployment: Deployment, rule: str, region: str, since: datetime | None
            ) -> Proportion:
    champion = Prediction.objects.champion().filter(case=OuterRef("case")).values("label")[:1]
    reviews = Review.objects.filter(
        task__policy_version__deployment=deployment, task__rule=rule,
        task__reason=ReviewTask.Reason.LOW_CONFIDENCE, case__region__code=region)
    if since is not None:
        reviews = reviews.filter(created_at__gte=since)
    counted = (reviews.annotate(model_label=Subquery(champion))
               .aggregate(n=Count("id"), agreed=Count("id", filter=Q(answer=F("model_label")))))
    return proportion(counted["agreed"], counted["n"])


def cell_in_domain(*, deployment: Deployment, rule: str, region: str, since: datetime | None,
               until: datetime) -> list[bool]:
    """The cell's cases in order: in domain (the model decided, or they went to reviewers for
    low confidence) or out of domain."""
    in_cell: dict[str, Any] = dict(case__deployment=deployment, case__region__code=region,
                                   rule=rule)
    decided = Decision.objects.filter(source=Decision.Source.MODEL, decided_at__lte=until,
                                      **in_cell)
    tasks = ReviewTask.objects.filter(reason__in=[ReviewTask.Reason.LOW_CONFIDENCE,
                                                  ReviewTask.Reason.OUT_OF_DOMAIN],
                                      created_at__lte=until, **in_cell)
    if since is not None:
        decided = decided.filter(decided_at__gte=since)
        tasks = tasks.filter(created_at__gte=since)
    rows = [(at, True) for at in decided.values_list("decided_at", flat=True)]
    rows += [(at, reason != ReviewTask.Reason.OUT_OF_DOMAIN)
             for at, reason in tasks.values_list("created_at", "reason")]
    rows.sort(key=lambda row: row[0])
    return [in_domain for _, in_domain in rows]


def ood_baselines(*, deployment: Deployment) -> dict[str, tuple[float | None, int]]:
    """Per region, the shadow-stage out-of-domain rate of the champion and its n: every
    region in one pass (cells share their region's baseline)."""
    rows = (Prediction.objects.champion()
            .filter(case__deployment=deployment)
            .filter(Exists(ReviewTask.objects.filter(case_id=OuterRef("case_id"),
                                                     reason=ReviewTask.Reason.SHADOW)))
            .values_list("case__region__code")
            .annotate(n=Count("id"), ood=Count("id", filter=Q(out_of_domain=True)))
            .order_by())
    return {region: (ood / n if n else None, n) for region, n, ood in rows}
