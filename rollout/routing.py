"""Routing: one pure function from a case, its champion prediction and a policy to an outcome.

Plain values in, a plain value out, so the same code serves the worker, the API and replays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


class Reason:
    SHADOW = "shadow"
    PAUSED = "paused"
    MODEL_FAILED = "model_failed"
    OUT_OF_SCOPE = "out_of_scope"
    LOW_CONFIDENCE = "low_confidence"
    OUT_OF_DOMAIN = "out_of_domain"
    IN_SCOPE = "in_scope"


@dataclass(frozen=True)
class CaseFacts:
    region: str


@dataclass(frozen=True)
class ChampionAnswer:
    """What the champion said; `label` is None when it failed or there is no champion."""

    label: str | None
    confidence: float | None = None
    out_of_domain: bool = False


@dataclass(frozen=True)
class Policy:
    stage: str
    rules: Sequence[dict[str, Any]] = field(default_factory=tuple)
    confidence_threshold: float = 0.9


@dataclass(frozen=True)
class Route:
    model_decides: bool
    reason: str
    rule: str = ""


def rule_matches(rule: dict[str, Any], case: CaseFacts) -> bool:
    """All of a rule's conditions hold for the case (conditions are ANDed)."""
    regions = rule.get("regions")
    return not (regions is not None and case.region not in regions)


def route(case: CaseFacts, champion: ChampionAnswer, policy: Policy) -> Route:
    if policy.stage == "shadow":
        return Route(model_decides=False, reason=Reason.SHADOW)
    if policy.stage == "paused":
        return Route(model_decides=False, reason=Reason.PAUSED)
    if champion.label is None:
        return Route(model_decides=False, reason=Reason.MODEL_FAILED)
    if policy.stage == "full":
        matched: dict[str, Any] | None = {"name": "full"}
    else:
        matched = next((rule for rule in policy.rules if rule_matches(rule, case)), None)
    if matched is None:
        return Route(model_decides=False, reason=Reason.OUT_OF_SCOPE)
    rule_name = str(matched.get("name", ""))
    if champion.out_of_domain:
        return Route(model_decides=False, reason=Reason.OUT_OF_DOMAIN, rule=rule_name)
    threshold = float(matched.get("confidence_threshold", policy.confidence_threshold))
    if champion.confidence is None or champion.confidence < threshold:
        return Route(model_decides=False, reason=Reason.LOW_CONFIDENCE, rule=rule_name)
    return Route(model_decides=True, reason=Reason.IN_SCOPE, rule=rule_name)
