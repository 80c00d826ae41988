"""Guardrails: watch each scope cell (rule x region) and pause automation where it fails.

Two sequential checks per cell (`rollout.sequential`; docs/guardrails.md), both over the
evidence gathered since the cell's current scope was published (walking back the policy
versions while the cell's rule, region, threshold and stage kind stay as they are):

- agreement: human answers to cases the policy let the model decide in that cell (audits once
  it decides; shadow reviews of cases it would have decided in the shadow stage), in the order
  they were given, against the model's answer. An e-detector pauses the cell when the evidence
  shows agreement below the policy's floor; thin evidence is inconclusive and never pauses.
  Reviews of cases sent to humans for low confidence are a harder population: reported, never
  part of this figure.
- inputs: the cell's cases in order, in domain or not, against a limit set from the region's
  own shadow-stage out-of-domain share. Inputs arrive at once, labels late, so this fires
  before any review.

Each check also sets the cell's audit rate for the next cases (adaptive, `rollout.models`
GUARDRAIL_DEFAULTS). A failing cell is paused by a new policy version authored by the guardrail
(author None), its reason carrying the figures; admins are alerted after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from reviewplatform.models import Deployment
from reviewplatform.stats import Proportion, proportion

from . import routing
from .alerts import admins_alert
from .guardrail_evidence import (
    AUTOMATED_STAGES,
    cell_answers,
    cell_in_domain,
    cell_unsure,
    cells_since,
    ood_baselines,
)
from .models import CellAuditRate, ChangeKind, PolicyVersion, Stage
from .selectors import policy_current
from .sequential import CellVerdict, SequentialTest, cell_verdict
from .services import policy_publish
from .verdicts import Verdict, agreement_test, audit_rates_for, evidence_words

logger = logging.getLogger(__name__)



@dataclass(frozen=True)
class CellReport:
    rule: str
    region: str
    since: datetime | None  # when the cell's current scope was published
    agreement: Proportion
    agreement_test: CellVerdict
    unsure: Proportion  # low-confidence reviews in the same cell: reported only
    ood_recent: Proportion  # out-of-domain share of the cell's cases (agreed = OOD count)
    ood_baseline: float | None
    ood_limit: float | None
    ood_test: CellVerdict | None
    paused: bool
    audit_rate: float

    @property
    def agreement_verdict(self) -> Verdict:
        return Verdict(self.agreement_test.verdict)

    @property
    def ood_verdict(self) -> Verdict:
        return Verdict(self.ood_test.verdict) if self.ood_test else Verdict.INCONCLUSIVE

    @property
    def fail_evidence_words(self) -> str:
        """The agreement check's evidence of falling below the floor, as the page shows it."""
        return evidence_words(self.agreement_test.fail_evidence)

    @property
    def fails(self) -> bool:
        return Verdict.FAIL in (self.agreement_verdict, self.ood_verdict)

    def figures(self) -> str:
        a, t = self.agreement, self.agreement_test
        parts = [f"region {self.region} under rule {self.rule}:"]
        if a.n:
            parts.append(f"agreement {a.agreed}/{a.n} = {a.rate:.3f} since the scope was "
                         f"published, evidence of falling below the floor "
                         f"{evidence_words(t.fail_evidence)} [{self.agreement_verdict}]")
        else:
            parts.append(f"no answers yet [{Verdict.INCONCLUSIVE}]")
        o = self.ood_recent
        if o.n and self.ood_limit is not None and self.ood_test is not None:
            parts.append(f"out-of-domain {o.agreed}/{o.n} = {o.rate:.3f} against a limit of "
                         f"{self.ood_limit:.3f}, evidence of exceeding it "
                         f"{evidence_words(self.ood_test.fail_evidence)} [{self.ood_verdict}]")
        return " ".join(parts)


def _cells(policy: PolicyVersion, regions: list[str]) -> list[tuple[str, str]]:
    if policy.stage == Stage.FULL:
        return [(routing.FULL_RULE, region) for region in regions]
    cells: list[tuple[str, str]] = []
    for rule in policy.rules:
        allowed = set(rule.get("regions") or regions) - set(rule.get("regions_not") or ())
        cells.extend((rule["name"], region) for region in regions if region in allowed)
    return cells


def _ood_check(*, limits: dict[str, Any], baseline: float | None, baseline_n: int,
               in_domain: list[bool]) -> tuple[float | None, CellVerdict | None]:
    """The out-of-domain limit of a cell and the sequential verdict on its cases (None: no
    usable baseline yet)."""
    if baseline is None or baseline_n < int(limits["ood_min_cases"]):
        return None, None
    limit = min(max(baseline * float(limits["ood_rate_factor"]),
                    baseline + float(limits["ood_rate_margin"])), 0.99)
    test = SequentialTest(floor=1.0 - limit, pause_evidence=float(limits["pause_evidence"]),
                          proof_evidence=float(limits["proof_evidence"]))
    return limit, cell_verdict(test, in_domain)


def guardrails_check(*, deployment: Deployment, now: datetime | None = None
                     ) -> list[CellReport]:
    """The guardrail figures of every cell of the current policy (no writes), on the
    evidence up to `now`."""
    now = now or timezone.now()
    policy = policy_current(deployment_id=deployment.pk)
    limits = policy.guardrail_settings
    test = agreement_test(limits)
    rates = audit_rates_for(limits, base=policy.audit_rate)
    regions = list(deployment.regions.values_list("code", flat=True))
    paused = {tuple(c) for c in policy.paused_cells}
    cells = _cells(policy, regions)
    if not cells:
        return []
    since = cells_since(deployment, cells, regions)
    baselines = ood_baselines(deployment=deployment)
    reports = []
    for rule, region in cells:
        start = since[(rule, region)]
        answers = cell_answers(deployment=deployment, rule=rule, region=region, since=start,
                           until=now)
        verdict = cell_verdict(test, answers)
        rate = float(rates.rate(test, detector=verdict.detector,
                                pass_log=test.pass_log_evidence(verdict.n, verdict.agreed)))
        in_domain = cell_in_domain(deployment=deployment, rule=rule, region=region, since=start,
                               until=now)
        baseline, baseline_n = baselines.get(region, (None, 0))
        limit, ood = _ood_check(limits=limits, baseline=baseline, baseline_n=baseline_n,
                                in_domain=in_domain)
        reports.append(CellReport(
            rule=rule, region=region, since=start,
            agreement=proportion(verdict.agreed, verdict.n), agreement_test=verdict,
            unsure=cell_unsure(deployment=deployment, rule=rule, region=region, since=start),
            ood_recent=proportion(len(in_domain) - sum(in_domain), len(in_domain)),
            ood_baseline=baseline, ood_limit=limit, ood_test=ood,
            paused=(rule, region) in paused, audit_rate=rate))
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


def _audit_rates_store(policy: PolicyVersion, reports: list[CellReport], now: datetime) -> None:
    """Keep each cell's audit rate for the router (one statement)."""
    CellAuditRate.objects.bulk_create(
        [CellAuditRate(deployment_id=policy.deployment_id, policy_version=policy, rule=r.rule,
                       region=r.region, rate=r.audit_rate, updated_at=now) for r in reports],
        update_conflicts=True, unique_fields=["deployment", "rule", "region"],
        update_fields=["policy_version", "rate", "updated_at"])


def guardrails_enforce(*, deployment: Deployment, now: datetime | None = None
                       ) -> PolicyVersion | None:
    """Set the audit rate of every cell of the current policy and pause every failing cell in
    one new version; None if none fail.

    Only automated stages are enforced; a cell already paused is left as it is.
    """
    now = now or timezone.now()
    policy = policy_current(deployment_id=deployment.pk)
    if policy.stage not in AUTOMATED_STAGES:
        return None
    reports = guardrails_check(deployment=deployment, now=now)
    cache.set(_figures_key(policy), reports, settings.GUARDRAIL_FIGURES_SECONDS)
    _audit_rates_store(policy, [r for r in reports if not r.paused], now)
    failing = [r for r in reports if r.fails and not r.paused]
    if not failing:
        return None
    limits = policy.guardrail_settings
    reason = ("Guardrail paused automation (floor {floor:.2f}, pause at evidence {a}): "
              .format(floor=float(limits["agreement_floor"]),
                      a=evidence_words(float(limits["pause_evidence"])))
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
                       "n": r.agreement.n, "evidence": r.agreement_test.fail_evidence,
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
