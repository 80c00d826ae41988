"""Routing: one pure function from a case, its champion prediction and a policy to an outcome.

Plain values in, a plain value out, so the same code serves the worker, the API and replays.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from reviewplatform.reasons import ReviewReason

from .scope import FULL_RULE, CompiledRule, audit_selected, rule_compile
from .stages import Stage

# Members bound once: on Python 3.11 looking up an enum member costs about 0.3 µs, and routing
# runs for every case (bench/rollout.py holds it to 100,000 cases a second).
_STAGE_SHADOW, _STAGE_PAUSED, _STAGE_FULL = Stage.SHADOW, Stage.PAUSED, Stage.FULL
_SHADOW = ReviewReason.SHADOW
_PAUSED = ReviewReason.PAUSED
_MODEL_FAILED = ReviewReason.MODEL_FAILED
_OUT_OF_SCOPE = ReviewReason.OUT_OF_SCOPE
_OUT_OF_DOMAIN = ReviewReason.OUT_OF_DOMAIN
_LOW_CONFIDENCE = ReviewReason.LOW_CONFIDENCE
_AUDIT = ReviewReason.AUDIT

IN_SCOPE = "in_scope"
"""The route's reason when the model decides alone (no review task is written for it)."""


@dataclass(frozen=True, slots=True)
class CaseFacts:
    """A case's own attributes: its region, its capture time in the region's time zone, and
    the stable key its sticky buckets are drawn from (the case id)."""

    region: str
    local: datetime | None = None
    case_key: str = ""


def case_facts(*, region: str, captured_at: datetime, timezone: str, case_key: str
               ) -> CaseFacts:
    return CaseFacts(region=region, local=captured_at.astimezone(ZoneInfo(timezone)),
                     case_key=case_key)


@dataclass(frozen=True)
class ChampionAnswer:
    """What the champion said; `label` is None when it failed or there is no champion."""

    label: str | None
    confidence: float | None = None
    out_of_domain: bool = False


@dataclass(frozen=True)
class Policy:
    """A policy version as plain values. `group_id` is the deployment's bucketing group;
    `paused_cells` holds (rule name, region) pairs a guardrail has paused; `audit_rates` the
    adaptive audit rate of a (rule name, region) cell, where the guardrail set one
    (otherwise `audit_rate`)."""

    stage: str
    rules: Sequence[dict[str, Any]] = field(default_factory=tuple)
    confidence_threshold: float = 0.9
    audit_rate: float = 0.0
    group_id: str = ""
    paused_cells: Collection[tuple[str, str]] = frozenset()
    audit_rates: Mapping[tuple[str, str], float] = field(default_factory=dict)
    compiled: tuple[CompiledRule, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = tuple(rule_compile(rule, group=self.group_id) for rule in self.rules)
        object.__setattr__(self, "compiled", compiled)
        object.__setattr__(self, "paused_cells",
                           frozenset((str(r), str(g)) for r, g in self.paused_cells))


@dataclass(frozen=True, slots=True)
class Route:
    """`model_decides`: the champion's answer becomes the Decision. With reason `audit` the
    model decides and a blind review of the same case is queued as well; `audit_rate` is the
    rate it was drawn at (what the report weights it by)."""

    model_decides: bool
    reason: str
    rule: str = ""
    audit_rate: float = 0.0

    @property
    def audit(self) -> bool:
        return self.reason == _AUDIT


__all__ = ["FULL_RULE", "IN_SCOPE", "CaseFacts", "ChampionAnswer", "Policy", "Route",
           "case_facts", "route"]


def _automated(case: CaseFacts, champion: ChampionAnswer, policy: Policy) -> Route:
    """The outcome under the policy's scope, as if automation were on."""
    if champion.label is None:
        return Route(model_decides=False, reason=_MODEL_FAILED)
    paused = policy.paused_cells
    threshold = policy.confidence_threshold
    if policy.stage == _STAGE_FULL:
        name = FULL_RULE
        if (name, case.region) in paused:
            return Route(model_decides=False, reason=_PAUSED, rule=name)
    else:
        matched: CompiledRule | None = None
        paused_rule = ""
        for rule in policy.compiled:
            if rule.matches(case.region, case.local, case.case_key):
                if paused and (rule.name, case.region) in paused:
                    paused_rule = paused_rule or rule.name
                    continue
                matched = rule
                break
        if matched is None:
            if paused_rule:
                return Route(model_decides=False, reason=_PAUSED, rule=paused_rule)
            return Route(model_decides=False, reason=_OUT_OF_SCOPE)
        name = matched.name
        if matched.confidence_threshold is not None:
            threshold = matched.confidence_threshold
    if champion.out_of_domain:
        return Route(model_decides=False, reason=_OUT_OF_DOMAIN, rule=name)
    if champion.confidence is None or champion.confidence < threshold:
        return Route(model_decides=False, reason=_LOW_CONFIDENCE, rule=name)
    rate = policy.audit_rates.get((name, case.region), policy.audit_rate)
    if audit_selected(policy.group_id, case.case_key, rate):
        return Route(model_decides=True, reason=_AUDIT, rule=name, audit_rate=rate)
    return Route(model_decides=True, reason=IN_SCOPE, rule=name, audit_rate=rate)


def route(case: CaseFacts, champion: ChampionAnswer, policy: Policy) -> Route:
    """Decide who decides a case.

    In the shadow stage every case goes to humans; the route still names the rule under which
    the model *would* have decided (empty otherwise), so shadow reviews count as evidence for
    that scope cell.
    """
    if policy.stage == _STAGE_SHADOW:
        would = _automated(case, champion, policy)
        return Route(model_decides=False, reason=_SHADOW,
                     rule=would.rule if would.model_decides else "")
    if policy.stage == _STAGE_PAUSED:
        return Route(model_decides=False, reason=_PAUSED)
    return _automated(case, champion, policy)
