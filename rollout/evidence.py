"""Evidence for widening a policy: a replay of recent real cases under the proposed scope.

The replay reads a bounded set of plain rows (the most recent `REPLAY_LIMIT` cases of the last
N days) and routes each with the same pure function the worker uses, under both the current
and the proposed policy. The gate: a widening passes only with proof that the model's agreement
with the humans who reviewed the cases it adds is above the policy's floor (a mixture
likelihood ratio of at least `proof_evidence`, valid however often the gate is looked at; see
`rollout.sequential`), on at least the policy's minimum sample; it fails when that evidence
shows agreement below the floor, and is "inconclusive" otherwise, saying how many more
reviewed cases would settle it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
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
from .verdicts import Verdict, agreement_test, evidence_words, gate_verdict

REPLAY_LIMIT = 50_000
GATE_NOT_NEEDED = "not needed"


def policy_for(spec: dict[str, Any], *, group_id: str,
               audit_rates: Mapping[tuple[str, str], float] | None = None) -> routing.Policy:
    return routing.Policy(
        stage=spec["stage"], rules=spec["rules"],
        confidence_threshold=float(spec["confidence_threshold"]),
        audit_rate=float(spec["audit_rate"]), group_id=group_id,
        paused_cells=[tuple(c) for c in spec.get("paused_cells") or ()],
        audit_rates=audit_rates or {},
    )


@dataclass(frozen=True)
class ClassRecall:
    label: str
    n: int
    correct: int

    @property
    def recall(self) -> float | None:
        return self.correct / self.n if self.n else None


@dataclass(frozen=True)
class SampleCase:
    """A recent case the proposed policy lets the model decide, with the model's answer."""

    case_id: int
    region: str
    label: str
    confidence: float | None
    human: str | None  # the first human answer, where one was given


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
    proof_evidence: float = 1.0  # the e-value that agreement in the added scope is above the floor
    answers_to_prove: int | None = None  # more answers at the rate seen that would prove it
    per_rule: dict[str, int] = field(default_factory=dict)
    sample: list[SampleCase] = field(default_factory=list)  # the most recent such cases

    @property
    def passes(self) -> bool:
        return self.gate in (Verdict.PASS, GATE_NOT_NEEDED)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passes"] = self.passes
        if not self.sample:
            del data["sample"]
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
                 now: datetime | None = None, sample_size: int = 0) -> Evidence:
    """Replay the last `replay_days` of cases under `current` and `proposed` (policy specs).

    `sample_size`: how many of the most recent cases the proposal lets the model decide to
    return in `sample` (for the page's preview).
    """
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
    sample: list[SampleCase] = []
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
            if len(sample) < sample_size:
                sample.append(SampleCase(case_id=pk, region=region, label=label,
                                         confidence=confidence, human=answer))
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
    proof, to_prove = 1.0, None
    if not reasons and not added:
        gate, why = GATE_NOT_NEEDED, "the change does not widen automation"
    else:
        test = agreement_test(settings)
        judged = gate_verdict(test, n=added_n, agreed=added_agreed, min_sample=min_sample)
        gate, proof, to_prove = judged.verdict, judged.pass_evidence, judged.to_prove
        seen = f"agreement in the added scope {added_agreed}/{added_n} over {days} days"
        proof_words, needed = evidence_words(proof), evidence_words(test.proof_evidence)
        if gate == Verdict.FAIL:
            why = (f"{seen} shows it below the floor {floor:.2f} (evidence "
                   f"{evidence_words(judged.fail_evidence)} ≥ {needed})")
        elif gate == Verdict.PASS:
            why = (f"{seen} proves it above the floor {floor:.2f} (evidence {proof_words} ≥ "
                   f"{needed})")
        elif not added_n:
            why = (f"only 0 reviewed cases in the added scope over {days} days: proof that "
                   f"agreement is above the floor {floor:.2f} takes at least {to_prove} "
                   "reviewed cases, all agreeing")
        elif to_prove is None:
            why = (f"{seen} does not prove it above the floor {floor:.2f} (evidence "
                   f"{proof_words} < {needed}), and more answers at this rate "
                   "would not either")
        else:
            why = (f"{seen} does not yet prove it above the floor {floor:.2f} (evidence "
                   f"{proof_words} < {needed}, at least {min_sample} answers "
                   f"needed): about {to_prove} more reviewed cases agreeing at this rate "
                   "would settle it")
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
        gate=gate, gate_reason=why, floor=floor, min_sample=min_sample, proof_evidence=proof,
        answers_to_prove=to_prove, per_rule=dict(per_rule), sample=sample,
    )
