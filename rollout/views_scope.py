"""The rollout page's scope editor: its live preview and its publish, both reading the same
form fields (`rollout.scope.form`) through the same validation as the API."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_POST

from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment

from . import scope, services
from .evidence import Evidence
from .scope.form import ScopeForm, scope_form_parse
from .selectors import policy_current
from .views import PUBLISH_PERM, ActionError, confirmed, page_render

SAMPLE_SIZE = 8
_POSTED = ("reason", "override_reason", "effective_at")


class FormInvalid(Exception):
    """The editor's fields could not be read or validated; `form.errors` says where."""

    def __init__(self, form: ScopeForm, first: ServiceError) -> None:
        super().__init__(first.message)
        self.form = form
        self.first = first


def _spec(deployment: Deployment, form: ScopeForm) -> dict[str, Any]:
    """The proposed policy of a parsed form, validated like every other change."""
    if form.values is None:
        field, message = next(iter(form.errors.items()))
        raise FormInvalid(form, ServiceError(message, field=field))
    current = policy_current(deployment_id=deployment.pk)
    try:
        # The guardrail pauses carried over exactly as the publish carries them.
        return services.policy_spec_validate(
            deployment=deployment, **form.values, guardrails=current.guardrails,
            current=current.spec())
    except ServiceError as error:
        field = form.error_add(error.field or "stage", error.message)
        raise FormInvalid(form, ServiceError(error.message, field=field)) from error


def _preview(evidence: Evidence) -> dict[str, Any]:
    a = evidence.proposed_agreement
    return {
        "days": evidence.days, "replayed": evidence.replayed,
        "automated_now": evidence.automated_now, "matched": evidence.automated_proposed,
        "added": evidence.added,
        "agreement": {"agreed": a.agreed, "n": a.n, "rate": a.rate, "low": a.low,
                      "high": a.high},
        "gate": evidence.gate, "gate_reason": evidence.gate_reason,
        "sample": [{"id": c.case_id, "region": c.region, "label": c.label,
                    "confidence": c.confidence, "human": c.human,
                    "image": reverse("case-image", args=[c.case_id]),
                    "url": reverse("case-page", args=[c.case_id])} for c in evidence.sample],
    }


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_preview(request: HttpRequest, slug: str) -> JsonResponse:
    """The editor's live summary: the proposed scope in words and its diff against the current
    version, and with `preview=1` a replay of recent cases under it (nothing is written)."""
    deployment = get_object_or_404(Deployment, slug=slug)
    form = scope_form_parse(dict(request.POST.lists()))
    try:
        spec = _spec(deployment, form)
    except FormInvalid as invalid:
        return JsonResponse({"lines": [], "diff": [], "changes": [], "names": {},
                             "errors": invalid.form.errors, "preview": None}, status=400)
    current = policy_current(deployment_id=deployment.pk).spec()
    preview = None
    if request.POST.get("preview") == "1":
        preview = _preview(services.policy_evidence(deployment=deployment, proposed=spec,
                                                    sample_size=SAMPLE_SIZE))
    names = {rule.prefix: spec["rules"][i]["name"] for i, rule in enumerate(form.kept)}
    return JsonResponse({"lines": scope.policy_describe(spec),
                         "diff": scope.policy_diff(current, spec),
                         "changes": scope.change_in_words(current, spec), "names": names,
                         "rules": form.rules_json, "errors": {}, "preview": preview})


@require_POST
@login_required
@permission_required(PUBLISH_PERM, raise_exception=True)
def rollout_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """The scope editor: check the evidence, publish now, or schedule for later."""
    deployment = get_object_or_404(Deployment, slug=slug)
    form = scope_form_parse(dict(request.POST.lists()))
    posted = {key: request.POST.get(key, "") for key in _POSTED}
    actor = cast(User, request.user)
    action = request.POST.get("action", "evidence")
    spec: dict[str, Any] | None = None
    try:
        spec = _spec(deployment, form)
        if action == "evidence":
            evidence = services.policy_evidence(deployment=deployment, proposed=spec,
                                                sample_size=SAMPLE_SIZE)
            return page_render(request, deployment, form=form, evidence=evidence, proposed=spec,
                         posted=posted)
        values = {key: spec[key] for key in ("stage", "rules", "confidence_threshold",
                                             "audit_rate")}
        if action == "schedule":
            effective_at = parse_datetime(posted["effective_at"])
            if effective_at is None:
                raise ServiceError("effective_at must be a date-time with its UTC offset, "
                                   "e.g. 2026-06-01T08:00:00+02:00", field="effective_at")
            services.policy_schedule(deployment=deployment, actor=actor, reason=posted["reason"],
                                     effective_at=effective_at, **values)
            messages.success(request, f"Scheduled for {effective_at.isoformat()}.")
        else:
            if posted["effective_at"].strip():
                raise ServiceError("Take effect at is set: use Schedule to publish at that "
                                   "time, or clear it to publish now", field="effective_at")
            current = policy_current(deployment_id=deployment.pk).spec()
            confirmed(request, " ".join(scope.change_in_words(current, spec)))
            version = services.policy_change(deployment=deployment, actor=actor,
                                             reason=posted["reason"],
                                             override_reason=posted["override_reason"],
                                             **values)
            messages.success(request, f"Published version {version.version}.")
    except FormInvalid as invalid:
        return page_render(request, deployment, form=form, posted=posted,
                     refused=ActionError(invalid.first, "publish"))
    except ServiceError as error:
        if error.field:
            form.errors[error.field] = error.message
        return page_render(request, deployment, form=form, posted=posted, proposed=spec,
                     refused=ActionError(error, "publish"))
    return HttpResponseRedirect(reverse("rollout", args=[slug]))
