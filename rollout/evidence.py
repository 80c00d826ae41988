"""Evidence for widening a policy: a replay of recent real cases under the proposed scope.

The replay reads a bounded set of plain rows (the most recent `REPLAY_LIMIT` cases of the last
N days) and routes each with the same pure function the worker uses, under both the current
and the proposed policy. The gate: a widening passes only when the cases it adds that humans
reviewed number at least the policy's minimum sample and the Wilson 95% lower bound of the
model's agreement with them reaches the policy's floor. Fewer is "inconclusive", never a pass.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from inference.models import Prediction
from reviewplatform.models import Case, Deployment, Review
from reviewplatform.stats import Proportion, proportion

from . import routing, scope
from .models import GUARDRAIL_DEFAULTS
from .verdicts import Verdict, verdict_for

REPLAY_LIMIT = 50_000
GATE_NOT_NEEDED = "not needed"


def policy_for(spec: dict[str, Any], *, group_id: str) -> routing.Policy:
    return routing.Policy(
        stage=spec["stage"], rules=spec["rules"],
        confidence_threshold=float(spec["confidence_threshold"]),
        audit_rate=float(spec["audit_rate"]), group_id=group_id,
        paused_cells=[tuple(c) for c in spec.get("paused_cells") or ()],
    )


@dataclass(frozen=True)
class ClassRecall:
    label: str
    n: int
    correct: int

    @property
    def recall(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass
class Evidence:
    """What an admin sees before a change is published, and what the gate decides."""

    widening: list[str]
    days: int
    replayed: int
    automated_now: int
    automated_proposed: int
    added: int
    added_agreement: Proportion
    proposed_agreement: Proportion
    recall: list[ClassRecall]
    queue_per_day_now: float
    queue_per_day_proposed: float
    gate: str  # GATE_NOT_NEEDED or a Verdict
    gate_reason: str
    floor: float = 0.0
    min_sample: int = 0
    per_rule: dict[str, int] = field(default_factory=dict)

    @property
    def passes(self) -> bool:
        return self.gate in (Verdict.PASS, GATE_NOT_NEEDED)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passes"] = self.passes
        return data


def _rows(deployment: Deployment, since: datetime) -> list[tuple[Any, ...]]:
    champion = Prediction.objects.filter(case=OuterRef("pk"), model_version__is_champion=True)
    human = (Review.objects.filter(case=OuterRef("pk"))
             .exclude(answer__in=[Review.CANNOT_TELL]).order_by("created_at"))
    return list(
        Case.objects.filter(deployment=deployment, created_at__gte=since)
        .annotate(
            champion_status=Subquery(champion.values("status")[:1]),
            champion_label=Subquery(champion.values("label")[:1]),
            champion_confidence=Subquery(champion.values("confidence")[:1]),
            champion_ood=Subquery(champion.values("out_of_domain")[:1]),
            human_answer=Subquery(human.values("answer")[:1]),
        )
        .order_by("-created_at")
        .values_list("pk", "region__code", "region__timezone", "captured_at",
                     "champion_status", "champion_label", "champion_confidence",
                     "champion_ood", "human_answer")[:REPLAY_LIMIT]
    )


def evidence_for(*, deployment: Deployment, current: dict[str, Any], proposed: dict[str, Any],
                 now: datetime | None = None) -> Evidence:
    """Replay the last `replay_days` of cases under `current` and `proposed` (policy specs)."""
    now = now or timezone.now()
    settings = {**GUARDRAIL_DEFAULTS, **(proposed.get("guardrails") or {})}
    days = int(settings["replay_days"])
    floor, min_sample = float(settings["agreement_floor"]), int(settings["min_sample"])
    regions = list(deployment.regions.values_list("code", flat=True))
    reasons = scope.widening(current, proposed, all_regions=regions)
    old_policy = policy_for(current, group_id=deployment.slug)
    new_policy = policy_for(proposed, group_id=deployment.slug)
    rows = _rows(deployment, now - timedelta(days=days))
    automated_now = automated_new = added = 0
    added_agreed = added_n = new_agreed = new_n = 0
    queue_now = queue_new = 0
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_rule: dict[str, int] = defaultdict(int)
    for (pk, region, tz, captured_at, status, label, confidence, ood, answer) in rows:
        facts = routing.case_facts(region=region, captured_at=captured_at, timezone=tz,
                                   case_key=str(pk))
        answer_model = routing.ChampionAnswer(
            label=label if status == Prediction.Status.OK else None,
            confidence=confidence, out_of_domain=bool(ood))
        before = routing.route(facts, answer_model, old_policy)
        after = routing.route(facts, answer_model, new_policy)
        automated_now += before.model_decides
        automated_new += after.model_decides
        queue_now += (not before.model_decides) or before.audit
        queue_new += (not after.model_decides) or after.audit
        if after.model_decides:
            per_rule[after.rule] += 1
            if answer is not None:
                new_n += 1
                new_agreed += answer == label
        if after.model_decides and not before.model_decides:
            added += 1
            if answer is not None:
                added_n += 1
                added_agreed += answer == label
                per_class[answer][0] += 1
                per_class[answer][1] += answer == label
    added_agreement = proportion(added_agreed, added_n)
    gate: str
    if not reasons and not added:
        gate, why = GATE_NOT_NEEDED, "the change does not widen automation"
    else:
        gate = verdict_for(added_agreement, floor=floor, min_sample=min_sample)
        if gate == Verdict.INCONCLUSIVE:
            why = (f"only {added_n} reviewed cases in the added scope over {days} days; "
                   f"the gate needs at least {min_sample}")
        elif gate == Verdict.FAIL:
            why = (f"agreement in the added scope {added_agreed}/{added_n} has a 95% lower "
                   f"bound of {added_agreement.low:.3f}, below the floor {floor:.2f}")
        else:
            why = (f"agreement in the added scope {added_agreed}/{added_n}, 95% lower bound "
                   f"{added_agreement.low:.3f} ≥ floor {floor:.2f}")
    labels = [str(label) for label in deployment.labels]
    return Evidence(
        widening=reasons or ([f"{added} recent cases would newly be automated"] if added else []),
        days=days, replayed=len(rows), automated_now=automated_now,
        automated_proposed=automated_new, added=added, added_agreement=added_agreement,
        proposed_agreement=proportion(new_agreed, new_n),
        recall=[ClassRecall(label=lb, n=per_class[lb][0], correct=per_class[lb][1])
                for lb in labels if lb in per_class],
        queue_per_day_now=round(queue_now / days, 2),
        queue_per_day_proposed=round(queue_new / days, 2),
        gate=gate, gate_reason=why, floor=floor, min_sample=min_sample, per_rule=dict(per_rule),
    )
