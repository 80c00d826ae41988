"""Admin pages of a deployment: its rollout policy and the model-versus-human report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from reviewplatform.errors import NotFound, ServiceError
from reviewplatform.models import Deployment, ReviewTask

from . import guardrails, scope, services
from .evidence import Evidence
from .guardrail_evidence import AUTOMATED_STAGES
from .models import PolicyVersion, Stage
from .reports import drift
from .reports.charts_page import report_charts
from .reports.selectors import report_build
from .reports.views import filters_or_error
from .scope.form import ScopeForm, scope_form_from_spec, scope_form_spares_add
from .scope.rules import WEEKDAYS
from .selectors import policy_current, policy_history
from .verdicts import evidence_words

ADMIN_PERM = "rollout.view_policyversion"
PUBLISH_PERM = "rollout.add_policyversion"


@dataclass(frozen=True)
class ActionError:
    """A refusal shown beside the action that caused it: `at` is "publish", "pause",
    "rollback" (of `version`) or "cell" (`rule` in `region`)."""

    error: ServiceError
    at: str
    version: int | None = None
    rule: str = ""
    region: str = ""


def page_render(request: HttpRequest, deployment: Deployment, *, form: ScopeForm | None = None,
          refused: ActionError | None = None, evidence: Evidence | None = None,
          proposed: dict[str, Any] | None = None, posted: Mapping[str, str] | None = None
          ) -> HttpResponse:
    policy = policy_current(deployment_id=deployment.pk)
    spec = policy.spec()
    history = [(v, scope.policy_diff(p.spec() if p else None, v.spec()),
                scope.change_in_words(spec, v.spec()))
               for v, p in policy_history(deployment=deployment)]
    timeline = [v for v, _, _ in reversed(history) if _stage_changed(v, history)]
    automated = policy.stage in AUTOMATED_STAGES
    cells = [(c, scope.change_in_words(spec, _cell_paused(spec, c.rule, c.region, not c.paused)))
             for c in guardrails.guardrails_check(deployment=deployment)]
    placed = refused is not None and (
        (refused.at == "cell" and any((c.rule, c.region) == (refused.rule, refused.region)
                                      for c, _ in cells))
        or (refused.at == "rollback" and refused.version != policy.version
            and any(v.version == refused.version for v, _, _ in history)))
    return render(request, "rollout/rollout.html", {
        "deployment": deployment,
        "policy": policy,
        "automated": automated,
        "scope_lines": scope.policy_describe(spec),
        "pause_words": scope.change_in_words(spec, {**spec, "stage": Stage.PAUSED}),
        "history": history,
        "timeline": timeline,
        "model_versions": deployment.model_versions.order_by("-is_champion", "name"),
        "regions": deployment.regions.all(),
        "region_codes": list(deployment.regions.values_list("code", flat=True)),
        "weekdays": WEEKDAYS,
        "cells": cells,
        "guardrail_settings": policy.guardrail_settings,
        "evidence_limits": {key: evidence_words(float(policy.guardrail_settings[key]))
                            for key in ("pause_evidence", "proof_evidence")},
        "scheduled": deployment.scheduled_changes.order_by("-effective_at")[:10],
        "alerts": deployment.alerts.order_by("-created_at", "-id")[:5],
        "stages": Stage.choices,
        "form": scope_form_spares_add(form or scope_form_from_spec(spec)),
        "posted": posted or {},
        "refused": refused,
        "refused_unplaced": not placed,
        "rule_template": {"prefix": "rule-__i__", "index": "__i__"},
        "window_template": {"index": "__j__"},
        "evidence": evidence,
        "proposed_lines": scope.policy_describe(proposed) if proposed else None,
        "proposed_diff": scope.policy_diff(spec, proposed) if proposed else None,
        "proposed_changes": scope.change_in_words(spec, proposed if proposed else spec),
    }, status=refused.error.status_code if refused else 200)


def _cell_paused(spec: dict[str, Any], rule: str, region: str, paused: bool
                 ) -> dict[str, Any]:
    """`spec` with one cell paused, or resumed."""
    cells = [list(c) for c in spec.get("paused_cells") or () if list(c) != [rule, region]]
    return {**spec, "paused_cells": [*cells, [rule, region]] if paused else cells}


def _stage_changed(version: Any, history: list[Any]) -> bool:
    """Versions where the stage changed: the stage timeline."""
    by_number = {v.version: v for v, _, _ in history}
    previous = by_number.get(version.version - 1)
    return previous is None or previous.stage != version.stage


@require_GET
@login_required
@permission_required(ADMIN_PERM, raise_exception=True)
def rollout_page(request: HttpRequest, slug: str) -> HttpResponse:
    return page_render(request, get_object_or_404(Deployment, slug=slug))


def confirmed(request: HttpRequest, what: str) -> None:
    """Actions that take effect at once are confirmed with a tick in their form."""
    if request.POST.get("confirm") != "yes":
        raise ServiceError(f"tick the box to confirm: {what}", field="confirm")


def _reason(request: HttpRequest) -> str:
    reason = request.POST.get("reason", "").strip()
    if not reason:
        raise ServiceError("say why: the reason goes into the policy's history", field="reason")
    return reason


def _policy_action(request: HttpRequest, slug: str,
                   act: Callable[[Deployment, User], tuple[PolicyVersion, str]],
                   at: Callable[[ServiceError], ActionError]) -> HttpResponse:
    """Run a policy change from the rollout page: on success its message and back to the page,
    on a refusal the page with the reason beside the action (4xx)."""
    deployment = get_object_or_404(Deployment, slug=slug)
    try:
        version, message = act(deployment, cast(User, request.user))
    except ServiceError as error:
        return page_render(request, deployment, refused=at(error))
    messages.success(request, f"{message}: version {version.version}.")
    return HttpResponseRedirect(reverse("rollout", args=[slug]))


def _words(deployment: Deployment, change: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
    spec = policy_current(deployment_id=deployment.pk).spec()
    return " ".join(scope.change_in_words(spec, change(spec)))


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_pause(request: HttpRequest, slug: str) -> HttpResponse:
    def act(deployment: Deployment, actor: User) -> tuple[PolicyVersion, str]:
        reason = _reason(request)
        confirmed(request, _words(deployment, lambda s: {**s, "stage": Stage.PAUSED}))
        return services.policy_pause(deployment=deployment, actor=actor,
                                     reason=reason), "Automation paused"

    return _policy_action(request, slug, act, lambda e: ActionError(e, "pause"))


def _cell_action(request: HttpRequest, slug: str, *, pause: bool) -> HttpResponse:
    rule, region = request.POST.get("rule", ""), request.POST.get("region", "")

    def act(deployment: Deployment, actor: User) -> tuple[PolicyVersion, str]:
        reason = _reason(request)
        confirmed(request, _words(deployment, lambda s: _cell_paused(s, rule, region, pause)))
        if pause:
            return services.policy_cell_pause(
                deployment=deployment, actor=actor, rule=rule, region=region, reason=reason,
            ), f"Rule {rule} paused in {region}"
        return services.policy_cell_resume(
            deployment=deployment, actor=actor, rule=rule, region=region, reason=reason,
            override_reason=request.POST.get("override_reason", ""),
        ), f"Rule {rule} resumed in {region}"

    return _policy_action(request, slug, act,
                          lambda e: ActionError(e, "cell", rule=rule, region=region))


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_resume(request: HttpRequest, slug: str) -> HttpResponse:
    return _cell_action(request, slug, pause=False)


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_cell_pause(request: HttpRequest, slug: str) -> HttpResponse:
    """Send one cell of the guardrail table (a rule in a region) back to reviewers."""
    return _cell_action(request, slug, pause=True)


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_rollback(request: HttpRequest, slug: str) -> HttpResponse:
    try:
        target: int | None = int(request.POST.get("version", ""))
    except ValueError:
        target = None

    def act(deployment: Deployment, actor: User) -> tuple[PolicyVersion, str]:
        if target is None:
            raise ServiceError("choose a version to roll back to", field="version")
        old = deployment.policy_versions.filter(version=target).first()
        if old is None:
            raise NotFound(f"policy version {target} does not exist", field="version")
        reason = _reason(request)
        confirmed(request, f"rolling back to version {target}: "
                           + _words(deployment, lambda _: old.spec()))
        version = services.policy_rollback(
            deployment=deployment, version=target, actor=actor, reason=reason,
            override_reason=request.POST.get("override_reason", ""))
        return version, f"Rolled back to the policy of version {target}"

    return _policy_action(request, slug, act,
                          lambda e: ActionError(e, "rollback", version=target))


@require_GET
@login_required
@permission_required(ADMIN_PERM, raise_exception=True)
def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    """The model-versus-human report of a deployment under the chosen filters."""
    deployment = get_object_or_404(Deployment, slug=slug)
    f = filters_or_error(request, deployment)
    if isinstance(f, HttpResponse):
        return f
    report = report_build(f)
    return render(request, "rollout/report.html", {
        "deployment": deployment,
        "report": report,
        "charts": report_charts(report),
        "query": urlencode(f.query()),
        "model_versions": deployment.model_versions.order_by("-is_champion", "name"),
        "regions": deployment.regions.all(),
        "stages": Stage.choices,
        "reasons": ReviewTask.Reason.choices,
        "floor": policy_current(deployment_id=deployment.pk).guardrail_settings[
            "agreement_floor"],
        "drift_cap": drift.CAP, "drift_permutations": drift.PERMUTATIONS,
        "drift_alpha": drift.ALPHA, "drift_min_cases": drift.MIN_CASES,
        "drift_days": drift.RECENT_DAYS,
        "server_zone": settings.TIME_ZONE,
    })
