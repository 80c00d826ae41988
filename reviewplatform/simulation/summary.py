"""What a simulation did, counted from the rows the services wrote (and, for what only the
simulation knows, the true labels)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import Count, F, Q

from reviewplatform.models import Case, Decision, Deployment, Review, ReviewTask
from rollout.models import ChangeKind

from .model import Known
from .scenario import Scenario


@dataclass(frozen=True)
class GuardrailPause:
    at: datetime
    version: int
    cells: list[tuple[str, str]]  # (rule, region) paused by this version


@dataclass
class Summary:
    scenario: str
    seed: int
    start: datetime
    end: datetime
    model_answers: str
    cases: int
    by_region: dict[str, int]
    decisions: dict[str, int]  # by source
    waiting: dict[str, int]  # cases without a decision, by status
    audits: int
    audits_answered: int
    audits_disagreeing: int
    wrong_automated: dict[str, int]  # by region
    automated: dict[str, int]  # by region
    pauses: list[GuardrailPause]
    published: list[str]
    refused: list[str]
    guardrail_checks: int
    guardrail_minutes: int
    reviewers: dict[str, int]
    seconds: float
    open_tasks: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def reconciles(self) -> bool:
        """Every case has exactly one decision or is still waiting for one."""
        return self.cases == sum(self.decisions.values()) + sum(self.waiting.values())

    def lines(self) -> list[str]:
        decided = ", ".join(f"{n} by {source}" for source, n in sorted(self.decisions.items()))
        waiting = ", ".join(f"{n} {status}" for status, n in sorted(self.waiting.items()))
        regions = ", ".join(f"{code} {n}" for code, n in sorted(self.by_region.items()))
        wrong = ", ".join(f"{code} {self.wrong_automated.get(code, 0)}/{n}"
                          for code, n in sorted(self.automated.items())) or "none automated"
        out = [
            f"scenario: {self.scenario} (seed {self.seed})",
            f"simulated time: {self.start:%Y-%m-%d %H:%M} to {self.end:%Y-%m-%d %H:%M} UTC, "
            f"run in {self.seconds:.1f} s",
            f"model answers: {self.model_answers}",
            f"cases: {self.cases} ({regions})",
            f"decisions: {decided or 'none'}; waiting: {waiting or 'none'}"
            f" ({'reconciles' if self.reconciles else 'DOES NOT RECONCILE'})",
            f"open review tasks at the end: {self.open_tasks}",
            f"audits: {self.audits} queued, {self.audits_answered} answered, "
            f"{self.audits_disagreeing} disagreeing with the model",
            f"wrong automated decisions (known from the simulated truth), by region: {wrong}",
            f"guardrails: checked {self.guardrail_checks} times, every "
            f"{self.guardrail_minutes} simulated minutes",
        ]
        if self.pauses:
            for pause in self.pauses:
                cells = ", ".join(f"{rule} x {region}" for rule, region in pause.cells)
                out.append(f"  guardrail pause v{pause.version} at {pause.at:%Y-%m-%d %H:%M} "
                           f"UTC: {cells}")
        else:
            out.append("  no guardrail pause")
        out += [f"policy published: {line}" for line in self.published]
        out += [f"policy change refused: {line}" for line in self.refused]
        out.append("simulated reviewers (answers): " + ", ".join(
            f"{name} {n}" for name, n in self.reviewers.items()))
        return out + self.notes


def summary_count(*, scenario: Scenario, deployment: Deployment, run_case_ids: list[int],
                  truths: dict[int, Known], start: datetime, end: datetime,
                  first_version: int, published: list[str], refused: list[str],
                  guardrail_checks: int, reviewers: dict[str, int], model_answers: str,
                  seed: int, seconds: float) -> Summary:
    cases = Case.objects.filter(pk__in=run_case_ids)
    by_region = dict(cases.values_list("region__code").annotate(n=Count("id")).order_by())
    decisions = dict(Decision.objects.filter(case__in=cases).values_list("source")
                     .annotate(n=Count("id")).order_by())
    waiting = dict(cases.filter(decision__isnull=True).values_list("status")
                   .annotate(n=Count("id")).order_by())
    audit_tasks = ReviewTask.objects.filter(case__in=cases, reason=ReviewTask.Reason.AUDIT)
    audits = audit_tasks.aggregate(
        n=Count("id"), answered=Count("id", filter=Q(status=ReviewTask.Status.DONE)))
    disagreeing = (Review.objects.filter(task__in=audit_tasks)
                   .exclude(answer=F("case__decision__label")).count())
    automated: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for case_id, label in Decision.objects.filter(
            case__in=cases, source=Decision.Source.MODEL).values_list("case_id", "label"):
        known = truths[case_id]
        automated[known.region] += 1
        wrong[known.region] += label != known.truth
    pauses = []
    previous: set[tuple[str, str]] = set()
    for version in deployment.policy_versions.filter(version__gt=first_version).order_by(
            "version"):
        cells = {(str(rule), str(region)) for rule, region in version.paused_cells}
        if version.kind == ChangeKind.GUARDRAIL:
            pauses.append(GuardrailPause(at=version.created_at, version=version.version,
                                         cells=sorted(cells - previous)))
        previous = cells
    return Summary(
        scenario=scenario.name, seed=seed, start=start, end=end, model_answers=model_answers,
        cases=len(run_case_ids), by_region=by_region, decisions=decisions, waiting=waiting,
        audits=audits["n"], audits_answered=audits["answered"],
        audits_disagreeing=disagreeing, wrong_automated=dict(wrong), automated=dict(automated),
        pauses=pauses, published=published, refused=refused,
        guardrail_checks=guardrail_checks, guardrail_minutes=scenario.guardrail_minutes,
        reviewers=reviewers, seconds=seconds,
        open_tasks=ReviewTask.objects.filter(
            case__in=cases, status__in=[ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED]
        ).count())
