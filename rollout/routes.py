"""Routes of received cases under their deployment's policy: the router that
`reviewplatform.lifecycle.cases_route` calls.

One case that cannot be routed (a region whose time zone is no longer known, a policy that no
longer compiles) goes to reviewers on its own, with the reason; the rest of its batch carries
on. A case whose deployment has no policy version at all is left waiting (the database refuses
such a deployment; one restored without its policies raises the stuck-case alert).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import OuterRef, Subquery
from django.db.models.functions import JSONObject

from inference.models import ModelVersion, Prediction, StoredPrediction
from reviewplatform import lifecycle
from reviewplatform.models import Case, ReviewTask

from . import routing
from .evidence import policy_for
from .models import CellAuditRate, PolicyVersion
from .verdicts import audit_rates_for

logger = logging.getLogger(__name__)


def _policies(deployment_ids: set[int]) -> dict[int, PolicyVersion]:
    """The policy in force of each deployment that has one, with the id of the deployment's
    champion model version as `champion_id` (None without a champion) and the audit rates the
    guardrail set for its cells as `cell_rates`."""
    champion = (ModelVersion.objects.filter(deployment_id=OuterRef("deployment_id"),
                                            is_champion=True).order_by().values("pk")[:1])
    rates = (CellAuditRate.objects.filter(policy_version=OuterRef("pk"))
             .values(cell=JSONObject(rule="rule", region="region", rate="rate")))
    newest: dict[int, PolicyVersion] = {}
    for version in (PolicyVersion.objects.filter(deployment_id__in=deployment_ids)
                    .annotate(champion_id=Subquery(champion), cell_rates=ArraySubquery(rates))
                    .order_by("deployment_id", "-version").distinct("deployment_id")):
        newest[version.deployment_id] = version
    return newest


def _champions(cases: list[Case], policies: Mapping[int, PolicyVersion],
               predicted: Mapping[int, Mapping[int, StoredPrediction]]
               ) -> dict[int, StoredPrediction]:
    """The champion's answer of each case that has one: taken from the predictions just
    written (`predicted`) where the champion's is among them, read otherwise."""
    champions: dict[int, StoredPrediction] = {}
    unknown = []
    for case in cases:
        champion_id = getattr(policies.get(case.deployment_id), "champion_id", None)
        if champion_id is None:
            continue
        made = predicted.get(case.pk, {}).get(champion_id)
        if made is None:
            unknown.append(case.pk)
        elif made.ok:
            champions[case.pk] = made
    if unknown:
        champions.update((p.case_id, p)
                         for p in Prediction.objects.filter(case_id__in=unknown)
                         .champion_stored())
    return champions


def _policy(version: PolicyVersion, group_id: str) -> routing.Policy:
    """The version as routing reads it: a cell audited at the rate the guardrail set for it
    at its last check of this version, else at the thin-evidence rate (a cell new to this
    version has no evidence yet)."""
    spec = version.spec()
    spec["audit_rate"] = audit_rates_for(version.guardrail_settings, base=version.audit_rate).thin
    return policy_for(spec, group_id=group_id, audit_rates={
        (c["rule"], c["region"]): float(c["rate"])
        for c in getattr(version, "cell_rates", None) or ()})


def cases_routes(cases: list[Case], *,
                 predicted: Mapping[int, Mapping[int, StoredPrediction]] | None = None
                 ) -> list[lifecycle.CaseRoute]:
    """The route of each case: the model's decision stands (an audit sample also goes to a
    reviewer), or humans decide, for a reason.

    `predicted` (case id → model version id → prediction) holds predictions the caller has
    just written, so that they need not be read back."""
    policies = _policies({case.deployment_id for case in cases})
    champions = _champions(cases, policies, predicted or {})
    compiled: dict[int, routing.Policy | Exception] = {}
    routes: list[lifecycle.CaseRoute] = []
    for case in cases:
        version = policies.get(case.deployment_id)
        if version is None:
            logger.error("case %s: deployment %s has no policy version; the case waits",
                         case.pk, case.deployment.slug)
            continue
        champion = champions.get(case.pk)
        urgent = lifecycle.is_urgent(champion.label if champion else None,
                                     case.deployment.urgent_labels)
        try:
            if case.deployment_id not in compiled:
                try:
                    compiled[case.deployment_id] = _policy(version, case.deployment.slug)
                except Exception as exc:
                    compiled[case.deployment_id] = exc
            policy = compiled[case.deployment_id]
            if isinstance(policy, Exception):
                raise policy
            outcome = routing.route(
                routing.case_facts(region=case.region.code, captured_at=case.captured_at,
                                   timezone=case.region.timezone, case_key=str(case.pk)),
                routing.ChampionAnswer(
                    label=champion.label if champion else None,
                    confidence=champion.confidence if champion else None,
                    out_of_domain=champion.out_of_domain if champion else False),
                policy)
        except Exception:  # one case that cannot be routed must not hold up the others
            logger.exception("case %s could not be routed; it goes to reviewers", case.pk)
            routes.append(lifecycle.CaseRoute(
                case_id=case.pk, policy_version_id=version.pk, urgent=urgent,
                review_reason=ReviewTask.Reason.ROUTING_FAILED))
            continue
        if outcome.model_decides and champion is not None:
            routes.append(lifecycle.CaseRoute(
                case_id=case.pk, policy_version_id=version.pk, rule=outcome.rule,
                model_label=champion.label, prediction_id=champion.id, urgent=urgent,
                review_reason=ReviewTask.Reason.AUDIT if outcome.audit else None,
                audit_rate=outcome.audit_rate if outcome.audit else None))
        else:
            routes.append(lifecycle.CaseRoute(
                case_id=case.pk, policy_version_id=version.pk, rule=outcome.rule,
                urgent=urgent, review_reason=outcome.reason))
    return routes
