"""Writes of rollout policies.

`policy_publish` is the one place a policy version is written (validated, numbered, immutable).
Admin actions (`policy_change`, `policy_cell_resume`, `policy_rollback`, and a scheduled change
when it falls due) go through the evidence gate first: a change that widens automation needs
passing evidence or an explicit override reason, which is recorded on the version. The kill
switch (`policy_pause`) is never gated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Max

from reviewplatform.errors import Conflict, NotFound, ServiceError
from reviewplatform.models import Deployment
from reviewplatform.nul import nul_refuse

from .. import routing, scope
from ..evidence import Evidence, evidence_for
from ..models import (
    GUARDRAIL_DEFAULTS,
    RETIRED_GUARDRAIL_SETTINGS,
    ChangeKind,
    PolicyVersion,
    Stage,
)
from ..selectors import policy_current

logger = logging.getLogger(__name__)

_GUARDRAIL_LIMITS: dict[str, tuple[float, float, bool]] = {
    # name: (min, max, integer)
    "agreement_floor": (0.01, 0.99, False), "pause_evidence": (2, 1e9, False),
    "proof_evidence": (2, 1e9, False), "min_sample": (1, 100_000, True),
    "ood_rate_factor": (1, 1000, False), "ood_rate_margin": (0, 1, False),
    "ood_min_cases": (1, 100_000, True), "audit_adaptive": (0, 1, True),
    "audit_rate_max": (0, 1, False), "replay_days": (1, 90, True),
}


def _plain(value: float) -> str:
    """A limit as people read it: 1,000,000,000 rather than 1e+09."""
    return f"{value:,.0f}" if value >= 1000 else f"{value:g}"


def _guardrails_validate(guardrails: Any) -> dict[str, Any]:
    if not isinstance(guardrails, dict):
        raise ServiceError("guardrails must be an object", field="guardrails")
    out: dict[str, Any] = {}
    for key, value in guardrails.items():
        if key in RETIRED_GUARDRAIL_SETTINGS:
            continue
        if key not in GUARDRAIL_DEFAULTS:
            raise ServiceError(f"unknown guardrail setting {key!r} (known: "
                               f"{', '.join(GUARDRAIL_DEFAULTS)})", field=f"guardrails.{key}")
        low, high, integer = _GUARDRAIL_LIMITS[key]
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or (integer and value != int(value)) or not low <= value <= high):
            kind = "a whole number" if integer else "a number"
            raise ServiceError(f"{key} must be {kind} from {_plain(low)} to {_plain(high)}",
                               field=f"guardrails.{key}")
        out[key] = int(value) if integer else float(value)
    return out


def policy_spec_validate(
    *, deployment: Deployment, stage: str, rules: Any, confidence_threshold: Any,
    audit_rate: Any, guardrails: Any = None, paused_cells: Any = None,
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check a proposed policy and return its canonical spec; ServiceError names the field.

    Its guardrail pauses come from `current`, the spec of the policy it would replace (None
    for a deployment's first version): `paused_cells` None keeps every one of them, carried
    to the cells that take their place (`scope.pauses_carry`: never lifted as a side effect);
    a list names the pauses wanted, so that one of `current`'s left out is lifted (a widening,
    which the evidence gate judges) and a new one must be a cell of the proposal.
    """
    if stage not in Stage.values:
        raise ServiceError(f"unknown stage {stage!r} (known: {', '.join(Stage.values)})",
                           field="stage")
    for name, value in (("confidence_threshold", confidence_threshold),
                        ("audit_rate", audit_rate)):
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            raise ServiceError(f"{name} must be between 0 and 1", field=name)
    regions = list(deployment.regions.values_list("code", flat=True))
    try:
        clean_rules = scope.rules_validate(rules, region_codes=regions)
    except scope.ScopeError as exc:
        raise ServiceError(exc.message, field=exc.field) from exc
    requested: list[list[str]] | None = None
    if paused_cells is not None:
        if not isinstance(paused_cells, list | tuple):
            raise ServiceError("paused_cells is a list of [rule name, region code]",
                               field="paused_cells")
        requested = []
        for i, cell in enumerate(paused_cells):
            if (not isinstance(cell, list | tuple) or len(cell) != 2
                    or not all(isinstance(c, str) for c in cell) or cell[1] not in regions):
                raise ServiceError("a paused cell is [rule name, region code]",
                                   field=f"paused_cells[{i}]")
            requested.append([cell[0], cell[1]])
    proposed = {"stage": stage, "rules": clean_rules}
    try:
        cells = scope.pauses_carry(current, proposed, requested)
    except scope.ScopeError as exc:
        raise ServiceError(exc.message, field=exc.field) from exc
    return {"stage": stage, "rules": clean_rules,
            "confidence_threshold": float(confidence_threshold),
            "audit_rate": float(audit_rate), "paused_cells": cells,
            "guardrails": _guardrails_validate(guardrails or {})}


def policy_publish(
    *,
    deployment: Deployment,
    stage: str,
    rules: list[dict[str, Any]],
    actor: User | None,
    reason: str,
    confidence_threshold: float = 0.9,
    audit_rate: float = 0.05,
    guardrails: dict[str, Any] | None = None,
    paused_cells: list[list[str]] | None = None,
    kind: str = ChangeKind.PUBLISH,
    copied_from: int | None = None,
    override_reason: str = "",
    evidence: dict[str, Any] | None = None,
) -> PolicyVersion:
    """Publish a new immutable policy version; it takes effect for cases routed from now on.

    `paused_cells` None keeps every guardrail pause of the current version, carried to the
    cells that take their place (see `policy_spec_validate`): publishing a new scope never
    lifts a pause. This writer does not gate; admin actions call `policy_change`, which does.
    """
    if not reason.strip():
        raise ServiceError("a policy change needs a reason", field="reason")
    nul_refuse(reason, field="reason")
    nul_refuse(override_reason, field="override_reason")
    with transaction.atomic():
        # Lock the deployment row so that two publishers get consecutive version numbers.
        Deployment.objects.select_for_update().filter(pk=deployment.pk).first()
        current = deployment.policy_versions.order_by("-version").first()
        spec = policy_spec_validate(
            deployment=deployment, stage=stage, rules=rules,
            confidence_threshold=confidence_threshold, audit_rate=audit_rate,
            guardrails=guardrails if guardrails is not None
            else (current.guardrails if current else {}),
            paused_cells=paused_cells, current=current.spec() if current else None)
        latest = deployment.policy_versions.aggregate(n=Max("version"))["n"] or 0
        version = PolicyVersion.objects.create(
            deployment=deployment, version=latest + 1, stage=spec["stage"],
            rules=spec["rules"], confidence_threshold=spec["confidence_threshold"],
            audit_rate=spec["audit_rate"], guardrails=spec["guardrails"],
            paused_cells=spec["paused_cells"], author=actor, reason=reason.strip(), kind=kind,
            copied_from=copied_from, override_reason=override_reason.strip(),
            evidence=evidence or {},
        )
    logger.info("%s published (%s): %s", version, kind, version.reason)
    return version


def policy_evidence(*, deployment: Deployment, proposed: dict[str, Any],
                    now: datetime | None = None, sample_size: int = 0) -> Evidence:
    """The evidence for moving from the current policy to `proposed` (a validated spec)."""
    current = policy_current(deployment_id=deployment.pk).spec()
    return evidence_for(deployment=deployment, current=current, proposed=proposed, now=now,
                        sample_size=sample_size)


def _gated_publish(*, deployment: Deployment, spec: dict[str, Any], actor: User | None,
                   reason: str, override_reason: str, kind: str,
                   paused_cells: list[list[str]] | None, copied_from: int | None = None,
                   now: datetime | None = None) -> PolicyVersion:
    """Publish `spec` if its evidence passes or with an override reason. `paused_cells` is
    what was asked for, resolved again against the version current once the deployment is
    locked: with None, a pause a guardrail adds meanwhile is carried over too."""
    if not reason.strip():
        raise ServiceError("a policy change needs a reason", field="reason")
    evidence = policy_evidence(deployment=deployment, proposed=spec, now=now)
    if not evidence.passes and not override_reason.strip():
        raise ServiceError(
            f"this change widens automation ({'; '.join(evidence.widening)}) and its evidence "
            f"gate did not pass: {evidence.gate_reason}. Publish it only with an override "
            "reason.", field="override_reason")
    return policy_publish(
        deployment=deployment, stage=spec["stage"], rules=spec["rules"], actor=actor,
        reason=reason, confidence_threshold=spec["confidence_threshold"],
        audit_rate=spec["audit_rate"], guardrails=spec["guardrails"],
        paused_cells=paused_cells, kind=kind, copied_from=copied_from,
        override_reason=override_reason if not evidence.passes else "",
        evidence=evidence.as_dict(),
    )


def policy_change(
    *,
    deployment: Deployment,
    actor: User | None,
    reason: str,
    stage: str,
    rules: Any,
    confidence_threshold: Any,
    audit_rate: Any,
    guardrails: Any = None,
    paused_cells: Any = None,
    override_reason: str = "",
    now: datetime | None = None,
) -> PolicyVersion:
    """An admin's change of policy, through the evidence gate.

    `paused_cells` None carries every guardrail pause over (see `policy_spec_validate`); a
    list lifts the pauses it leaves out."""
    current = policy_current(deployment_id=deployment.pk)
    spec = policy_spec_validate(
        deployment=deployment, stage=stage, rules=rules,
        confidence_threshold=confidence_threshold, audit_rate=audit_rate,
        guardrails=current.guardrails if guardrails is None else guardrails,
        paused_cells=paused_cells, current=current.spec())
    return _gated_publish(deployment=deployment, spec=spec, actor=actor, reason=reason,
                          override_reason=override_reason, kind=ChangeKind.PUBLISH,
                          paused_cells=paused_cells, now=now)


def policy_cell_resume(*, deployment: Deployment, actor: User | None, rule: str, region: str,
                       reason: str, override_reason: str = "") -> PolicyVersion:
    """Lift the pause of one scope cell (a guardrail's, say): a widening, so through the
    evidence gate like any other change."""
    current = policy_current(deployment_id=deployment.pk)
    cell = [rule, region]
    if cell not in [list(c) for c in current.paused_cells]:
        raise ServiceError(f"rule {rule!r} in region {region!r} is not paused", field="region")
    return policy_change(
        deployment=deployment, actor=actor, reason=reason or f"resumed rule {rule} in {region}",
        override_reason=override_reason, stage=current.stage, rules=current.rules,
        confidence_threshold=current.confidence_threshold, audit_rate=current.audit_rate,
        paused_cells=[c for c in current.paused_cells if list(c) != cell])


def policy_cell_pause(*, deployment: Deployment, actor: User | None, rule: str, region: str,
                      reason: str) -> PolicyVersion:
    """Send one scope cell (a rule in a region) back to reviewers, as a guardrail does: a new
    version with the cell in `paused_cells`. A narrowing, so never gated."""
    current = policy_current(deployment_id=deployment.pk)
    if current.stage not in (Stage.LIMITED, Stage.EXPANDING, Stage.FULL):
        raise Conflict(f"the model decides nothing in the {current.stage} stage: there is no "
                       "cell to pause", field="stage")
    if not reason.strip():
        raise ServiceError("pausing a cell needs a reason", field="reason")
    regions = list(deployment.regions.values_list("code", flat=True))
    if current.stage == Stage.FULL:
        if rule != routing.FULL_RULE:
            raise ServiceError(f"in the full stage the one rule is {routing.FULL_RULE!r}",
                               field="rule")
        allowed = set(regions)
    else:
        found = next((r for r in current.rules if r["name"] == rule), None)
        if found is None:
            raise ServiceError(f"the current policy has no rule {rule!r}", field="rule")
        allowed = set(found.get("regions") or regions) - set(found.get("regions_not") or ())
    if region not in allowed:
        raise ServiceError(f"rule {rule!r} does not take cases from region {region!r}",
                           field="region")
    cell = [rule, region]
    if cell in [list(c) for c in current.paused_cells]:
        raise Conflict(f"rule {rule!r} in region {region!r} is already paused", field="region")
    return policy_publish(
        deployment=deployment, stage=current.stage, rules=current.rules, actor=actor,
        reason=reason, confidence_threshold=current.confidence_threshold,
        audit_rate=current.audit_rate, guardrails=current.guardrails,
        paused_cells=[*[list(c) for c in current.paused_cells], cell], kind=ChangeKind.PAUSE)


def policy_pause(*, deployment: Deployment, actor: User | None, reason: str) -> PolicyVersion:
    """The kill switch: every new case goes to humans at once. Never gated."""
    current = policy_current(deployment_id=deployment.pk)
    if current.stage == Stage.PAUSED:
        raise Conflict("automation is already paused", field="stage")
    return policy_publish(
        deployment=deployment, stage=Stage.PAUSED, rules=current.rules, actor=actor,
        reason=reason, confidence_threshold=current.confidence_threshold,
        audit_rate=current.audit_rate, guardrails=current.guardrails,
        paused_cells=current.paused_cells, kind=ChangeKind.PAUSE)


def policy_rollback(*, deployment: Deployment, version: int, actor: User | None, reason: str,
                    override_reason: str = "", now: datetime | None = None) -> PolicyVersion:
    """Publish a copy of an earlier version. Gated like any change, when it widens."""
    target = deployment.policy_versions.filter(version=version).first()
    if target is None:
        raise NotFound(f"policy version {version} does not exist", field="version")
    current = policy_current(deployment_id=deployment.pk)
    if target.version == current.version:
        raise ServiceError(f"version {version} is the current version", field="version")
    # The version's own pauses, less any that paused nothing then and is not paused now.
    spec, now_spec = target.spec(), current.spec()
    cells = [c for c in spec["paused_cells"] if c in now_spec["paused_cells"]
             or tuple(c) in scope.pauses_in_force(spec)]
    spec = policy_spec_validate(
        deployment=deployment, stage=spec["stage"], rules=spec["rules"],
        confidence_threshold=spec["confidence_threshold"], audit_rate=spec["audit_rate"],
        guardrails=spec["guardrails"], paused_cells=cells, current=now_spec)
    return _gated_publish(deployment=deployment, spec=spec, actor=actor,
                          reason=reason, override_reason=override_reason,
                          kind=ChangeKind.ROLLBACK, paused_cells=cells,
                          copied_from=target.version, now=now)
