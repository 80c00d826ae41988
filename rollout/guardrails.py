"""Guardrails: watch each scope cell (rule x region) and pause automation where it fails.

Two checks per cell, both counted in the database:

- agreement: recent human reviews of cases the policy lets the model decide in that cell
  (shadow-stage reviews of cases the model would have decided, and audit samples once it
  decides) against the model's answer. When the Wilson 95% lower bound falls below the
  policy's floor with at least the minimum sample, the cell fails. Fewer reviews:
  "inconclusive", never a pass. Reviews of cases sent to humans for low confidence are a
  harder population: reported, never part of this figure.
- inputs: the out-of-domain rate of the cell's recent cases against the region's own
  shadow-stage rate. Inputs arrive at once, labels late, so this fires before any review.

A failing cell is paused by a new policy version authored by the guardrail (author None), its
reason carrying the figures; admins are alerted after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Case as CaseWhen
from django.db.models import CharField, Count, Exists, F, OuterRef, Q, Subquery, When
from django.utils import timezone

from inference.models import Prediction
from reviewplatform.models import Decision, Deployment, Review, ReviewTask
from reviewplatform.stats import Proportion, proportion

from . import routing
from .alerts import admins_alert
from .models import ChangeKind, PolicyVersion, Stage
from .selectors import policy_current
from .services import policy_publish
from .verdicts import Verdict, verdict_for

logger = logging.getLogger(__name__)

AUTOMATED_STAGES = (Stage.LIMITED, Stage.EXPANDING, Stage.FULL)


@dataclass(frozen=True)
class CellReport:
    rule: str
    region: str
    agreement: Proportion
    agreement_verdict: Verdict
    unsure: Proportion  # low-confidence reviews in the same cell: reported only
    ood_recent: Proportion  # out-of-domain share of recent cases (agreed = OOD count)
    ood_baseline: float | None
    ood_verdict: Verdict
    paused: bool

    @property
    def fails(self) -> bool:
        return Verdict.FAIL in (self.agreement_verdict, self.ood_verdict)

    def figures(self) -> str:
        a = self.agreement
        parts = [f"region {self.region} under rule {self.rule}:"]
        if a.n:
            parts.append(f"agreement {a.agreed}/{a.n} = {a.rate:.3f} "
                         f"(95% Wilson {a.low:.3f}-{a.high:.3f}) [{self.agreement_verdict}]")
        else:
            parts.append(f"no reviews yet [{Verdict.INCONCLUSIVE}]")
        o = self.ood_recent
        if o.n:
            base = "n/a" if self.ood_baseline is None else f"{self.ood_baseline:.3f}"
            parts.append(f"out-of-domain {o.agreed}/{o.n} = {o.rate:.3f} (lower bound "
                         f"{o.low:.3f}) against shadow-stage {base} [{self.ood_verdict}]")
        return " ".join(parts)


def _cells(policy: PolicyVersion, regions: list[str]) -> list[tuple[str, str]]:
    if policy.stage == Stage.FULL:
        return [(routing.FULL_RULE, region) for region in regions]
    cells: list[tuple[str, str]] = []
    for rule in policy.rules:
        allowed = set(rule.get("regions") or regions) - set(rule.get("regions_not") or ())
        cells.extend((rule["name"], region) for region in regions if region in allowed)
    return cells


def _review_agreement(*, deployment: Deployment, rule: str, region: str, reasons: list[str],
                      since: datetime) -> Proportion:
    champion = Prediction.objects.champion().filter(case=OuterRef("case")).values("label")[:1]
    counted = (Review.objects
               .filter(task__policy_version__deployment=deployment, task__rule=rule,
                       task__reason__in=reasons, case__region__code=region,
                       created_at__gte=since)
               .annotate(model_label=CaseWhen(
                   When(task__reason=ReviewTask.Reason.AUDIT, then=F("case__decision__label")),
                   default=Subquery(champion), output_field=CharField()))
               .aggregate(n=Count("id"), agreed=Count("id", filter=Q(answer=F("model_label")))))
    return proportion(counted["agreed"], counted["n"])


def _ood_recent(*, deployment: Deployment, rule: str, region: str, since: datetime
                ) -> Proportion:
    """The cell's recent out-of-domain share: its out-of-domain tasks against the cases the
    model decided or sent on for confidence or inputs."""
    in_cell = dict(case__deployment=deployment, case__region__code=region, rule=rule)
    decided = Decision.objects.filter(source=Decision.Source.MODEL, decided_at__gte=since,
                                      **in_cell).count()
    tasks = (ReviewTask.objects.filter(created_at__gte=since, **in_cell)
             .aggregate(n=Count("id", filter=Q(reason__in=[ReviewTask.Reason.LOW_CONFIDENCE,
                                                          ReviewTask.Reason.OUT_OF_DOMAIN])),
                        ood=Count("id", filter=Q(reason=ReviewTask.Reason.OUT_OF_DOMAIN))))
    return proportion(tasks["ood"], decided + tasks["n"])


def _ood_baselines(*, deployment: Deployment) -> dict[str, tuple[float | None, int]]:
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


def guardrails_check(*, deployment: Deployment, now: datetime | None = None
                     ) -> list[CellReport]:
    """The guardrail figures of every cell of the current policy (no writes)."""
    now = now or timezone.now()
    policy = policy_current(deployment_id=deployment.pk)
    limits = policy.guardrail_settings
    since = now - timedelta(days=float(limits["window_days"]))
    regions = list(deployment.regions.values_list("code", flat=True))
    paused = {tuple(c) for c in policy.paused_cells}
    cells = _cells(policy, regions)
    baselines = _ood_baselines(deployment=deployment) if cells else {}
    reports = []
    for rule, region in cells:
        agreement = _review_agreement(
            deployment=deployment, rule=rule, region=region, since=since,
            reasons=[ReviewTask.Reason.SHADOW, ReviewTask.Reason.AUDIT])
        verdict = verdict_for(agreement, floor=float(limits["agreement_floor"]),
                              min_sample=int(limits["min_sample"]))
        unsure = _review_agreement(deployment=deployment, rule=rule, region=region,
                                   since=since, reasons=[ReviewTask.Reason.LOW_CONFIDENCE])
        recent = _ood_recent(deployment=deployment, rule=rule, region=region, since=since)
        baseline, baseline_n = baselines.get(region, (None, 0))
        min_cases = int(limits["ood_min_cases"])
        if baseline is None or baseline_n < min_cases or recent.n < min_cases:
            ood_verdict = Verdict.INCONCLUSIVE
        elif ((recent.low or 0.0) > baseline * float(limits["ood_rate_factor"])
              and (recent.low or 0.0) > baseline + float(limits["ood_rate_margin"])):
            ood_verdict = Verdict.FAIL
        else:
            ood_verdict = Verdict.PASS
        reports.append(CellReport(
            rule=rule, region=region, agreement=agreement, agreement_verdict=verdict,
            unsure=unsure, ood_recent=recent, ood_baseline=baseline, ood_verdict=ood_verdict,
            paused=(rule, region) in paused))
    return reports


def _figures_key(policy: PolicyVersion) -> str:
    return f"guardrails:{policy.deployment_id}:{policy.pk}"


def guardrails_recent(*, deployment: Deployment) -> list[CellReport]:
    """The current policy's cell figures as checked at most GUARDRAIL_FIGURES_SECONDS ago
    (by beat's last run, or an earlier reader), else checked now: for readers that ask
    often, such as a Prometheus scrape. A new policy version is checked afresh."""
    policy = policy_current(deployment_id=deployment.pk)
    reports = cache.get_or_set(
        _figures_key(policy), lambda: guardrails_check(deployment=deployment),
        settings.GUARDRAIL_FIGURES_SECONDS)
    return cast(list[CellReport], reports)


def guardrails_enforce(*, deployment: Deployment, now: datetime | None = None
                       ) -> PolicyVersion | None:
    """Pause every failing cell of the current policy in one new version; None if none fail.

    Only automated stages are enforced; a cell already paused is left as it is.
    """
    policy = policy_current(deployment_id=deployment.pk)
    if policy.stage not in AUTOMATED_STAGES:
        return None
    reports = guardrails_check(deployment=deployment, now=now)
    cache.set(_figures_key(policy), reports, settings.GUARDRAIL_FIGURES_SECONDS)
    failing = [r for r in reports if r.fails and not r.paused]
    if not failing:
        return None
    limits = policy.guardrail_settings
    reason = ("Guardrail paused automation (floor {floor:.2f}, min sample {n}): ".format(
        floor=float(limits["agreement_floor"]), n=int(limits["min_sample"]))
        + "; ".join(r.figures() for r in failing))
    with transaction.atomic():
        version = policy_publish(
            deployment=deployment, stage=policy.stage, rules=policy.rules, actor=None,
            reason=reason, confidence_threshold=policy.confidence_threshold,
            audit_rate=policy.audit_rate, guardrails=policy.guardrails,
            paused_cells=[*policy.paused_cells, *([r.rule, r.region] for r in failing)],
            kind=ChangeKind.GUARDRAIL)
        payload: dict[str, Any] = {
            "event": "guardrail_pause", "deployment": deployment.slug,
            "policy_version": version.version,
            "cells": [{"rule": r.rule, "region": r.region, "agreed": r.agreement.agreed,
                       "n": r.agreement.n, "lower_bound": r.agreement.low,
                       "agreement": r.agreement_verdict, "ood": r.ood_verdict}
                      for r in failing]}
        transaction.on_commit(lambda: admins_alert(
            subject=f"{deployment.slug}: guardrail paused automation", body=reason,
            payload=payload))
    logger.warning("%s", reason)
    return version


def guardrails_run(*, now: datetime | None = None) -> list[PolicyVersion]:
    """Enforce the guardrails of every deployment (run by Celery beat)."""
    paused = []
    for deployment in Deployment.objects.all():
        version = guardrails_enforce(deployment=deployment, now=now)
        if version is not None:
            paused.append(version)
    return paused
