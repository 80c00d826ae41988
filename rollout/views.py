"""Admin pages of a deployment: its rollout policy and the model-versus-human report."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment, ReviewTask

from . import guardrails, scope, services
from .models import PolicyVersion, Stage
from .reports import drift
from .reports.charts_page import report_charts
from .reports.selectors import report_build
from .reports.views import filters_or_error
from .selectors import policy_current, policy_history

ADMIN_PERM = "rollout.view_policyversion"
PUBLISH_PERM = "rollout.add_policyversion"


def _page(request: HttpRequest, deployment: Deployment, *, form: dict[str, Any] | None = None,
          error: ServiceError | None = None, evidence: Any = None,
          proposed: dict[str, Any] | None = None) -> HttpResponse:
    policy = policy_current(deployment_id=deployment.pk)
    spec = policy.spec()
    history = [(v, scope.policy_diff(p.spec() if p else None, v.spec()))
               for v, p in policy_history(deployment=deployment)]
    timeline = [v for v, _ in reversed(history)
                if _stage_changed(v, history)]
    return render(request, "rollout/rollout.html", {
        "deployment": deployment,
        "policy": policy,
        "scope_lines": scope.policy_describe(spec),
        "history": history,
        "timeline": timeline,
        "model_versions": deployment.model_versions.order_by("-is_champion", "name"),
        "regions": deployment.regions.all(),
        "cells": guardrails.guardrails_check(deployment=deployment),
        "guardrail_settings": policy.guardrail_settings,
        "scheduled": deployment.scheduled_changes.order_by("-effective_at")[:10],
        "stages": Stage.choices,
        "form": form or {"stage": policy.stage, "rules": json.dumps(policy.rules, indent=2),
                         "confidence_threshold": policy.confidence_threshold,
                         "audit_rate": policy.audit_rate},
        "error": error,
        "evidence": evidence,
        "proposed_lines": scope.policy_describe(proposed) if proposed else None,
        "proposed_diff": scope.policy_diff(spec, proposed) if proposed else None,
    }, status=400 if error else 200)


def _stage_changed(version: Any, history: list[Any]) -> bool:
    """Versions where the stage changed: the stage timeline."""
    by_number = {v.version: v for v, _ in history}
    previous = by_number.get(version.version - 1)
    return previous is None or previous.stage != version.stage


@require_GET
@login_required
@permission_required(ADMIN_PERM, raise_exception=True)
def rollout_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _page(request, get_object_or_404(Deployment, slug=slug))


def _number(value: str, field: str) -> float:
    try:
        return float(value)
    except ValueError as exc:
        raise ServiceError(f"{field} must be a number", field=field) from exc


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """The scope editor: check the evidence, publish now, or schedule for later."""
    deployment = get_object_or_404(Deployment, slug=slug)
    form = {key: request.POST.get(key, "") for key in (
        "stage", "rules", "confidence_threshold", "audit_rate", "reason", "override_reason",
        "effective_at")}
    actor = cast(User, request.user)
    action = request.POST.get("action", "evidence")
    try:
        try:
            rules = json.loads(form["rules"] or "[]")
        except json.JSONDecodeError as exc:
            raise ServiceError(f"rules are not valid JSON: {exc}", field="rules") from exc
        values = {"stage": form["stage"], "rules": rules,
                  "confidence_threshold": _number(form["confidence_threshold"],
                                                  "confidence_threshold"),
                  "audit_rate": _number(form["audit_rate"], "audit_rate")}
        current = policy_current(deployment_id=deployment.pk)
        spec = services.policy_spec_validate(deployment=deployment, **values,
                                             guardrails=current.guardrails,
                                             paused_cells=current.paused_cells)
        if action == "evidence":
            evidence = services.policy_evidence(deployment=deployment, proposed=spec)
            return _page(request, deployment, form=form, evidence=evidence, proposed=spec)
        if action == "schedule":
            effective_at = parse_datetime(form["effective_at"] or "")
            if effective_at is None:
                raise ServiceError("effective_at must be a date-time with its UTC offset, "
                                   "e.g. 2026-06-01T08:00:00+02:00", field="effective_at")
            services.policy_schedule(deployment=deployment, actor=actor, reason=form["reason"],
                                     effective_at=effective_at, **values)
            messages.success(request, f"Scheduled for {effective_at.isoformat()}.")
        else:
            version = services.policy_change(deployment=deployment, actor=actor,
                                             reason=form["reason"],
                                             override_reason=form["override_reason"],
                                             **values)
            messages.success(request, f"Published version {version.version}.")
    except ServiceError as error:
        return _page(request, deployment, form=form, error=error)
    return HttpResponseRedirect(reverse("rollout", args=[slug]))


def _confirmed(request: HttpRequest, what: str) -> None:
    """Actions that take effect at once are confirmed with a tick in their form."""
    if request.POST.get("confirm") != "yes":
        raise ServiceError(f"tick the box to confirm: {what}", field="confirm")


def _policy_action(request: HttpRequest, slug: str,
                   act: Callable[[Deployment, User], tuple[PolicyVersion, str]]) -> HttpResponse:
    """Run a policy change from the rollout page: on success its message and back to the page,
    on a refusal the page with the reason (400)."""
    deployment = get_object_or_404(Deployment, slug=slug)
    try:
        version, message = act(deployment, cast(User, request.user))
    except ServiceError as error:
        return _page(request, deployment, error=error)
    messages.success(request, f"{message}: version {version.version}.")
    return HttpResponseRedirect(reverse("rollout", args=[slug]))


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_pause(request: HttpRequest, slug: str) -> HttpResponse:
    def act(deployment: Deployment, actor: User) -> tuple[PolicyVersion, str]:
        _confirmed(request, "pausing sends every new case of this deployment to reviewers")
        return services.policy_pause(
            deployment=deployment, actor=actor,
            reason=request.POST.get("reason") or "paused from the rollout page"
        ), "Automation paused"

    return _policy_action(request, slug, act)


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_resume(request: HttpRequest, slug: str) -> HttpResponse:
    rule, region = request.POST.get("rule", ""), request.POST.get("region", "")

    def act(deployment: Deployment, actor: User) -> tuple[PolicyVersion, str]:
        return services.policy_cell_resume(
            deployment=deployment, actor=actor, rule=rule, region=region,
            reason=request.POST.get("reason", ""),
            override_reason=request.POST.get("override_reason", ""),
        ), f"Rule {rule} resumed in {region}"

    return _policy_action(request, slug, act)


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_rollback(request: HttpRequest, slug: str) -> HttpResponse:
    def act(deployment: Deployment, actor: User) -> tuple[PolicyVersion, str]:
        try:
            target = int(request.POST.get("version", ""))
        except ValueError as exc:
            raise ServiceError("choose a version to roll back to", field="version") from exc
        _confirmed(request, f"rolling back publishes the policy of version {target} again")
        version = services.policy_rollback(
            deployment=deployment, version=target, actor=actor,
            reason=request.POST.get("reason") or f"rolled back to version {target}",
            override_reason=request.POST.get("override_reason", ""))
        return version, f"Rolled back to the policy of version {target}"

    return _policy_action(request, slug, act)


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
    })
