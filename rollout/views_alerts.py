"""The alerts page: every alert sent to the admins with its figures, and the scheduled policy
changes that are coming or were held, across deployments."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required, permission_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from reviewplatform.models import Deployment

from .models import Alert, ScheduledChange

ADMIN_PERM = "rollout.view_policyversion"
PER_PAGE = 50

# The events `admins_alert` is called with, in words.
EVENTS = {
    "guardrail_pause": "guardrail paused automation",
    "scheduled_change_held": "scheduled change held",
    "cases_stuck": "cases waiting before routing",
    "model_failing": "model version failing",
    "webhook_deliveries_failed": "webhook deliveries failed for good",
}


@require_GET
@login_required
@permission_required(ADMIN_PERM, raise_exception=True)
def alerts_page(request: HttpRequest) -> HttpResponse:
    slug = request.GET.get("deployment", "")
    event = request.GET.get("event", "")
    deployments = list(Deployment.objects.order_by("slug"))
    errors = []
    alerts = Alert.objects.select_related("deployment")
    changes = ScheduledChange.objects.select_related("deployment", "author")
    if slug:
        if slug not in {d.slug for d in deployments}:
            errors.append(f"there is no deployment {slug!r}")
        alerts = alerts.filter(deployment__slug=slug)
        changes = changes.filter(deployment__slug=slug)
    if event:
        if event not in EVENTS:
            errors.append(f"there is no alert kind {event!r}; the kinds are "
                          + ", ".join(EVENTS))
        alerts = alerts.filter(event=event)
    if errors:
        alerts, changes = Alert.objects.none(), ScheduledChange.objects.none()
    page = Paginator(alerts, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "rollout/alerts.html", {
        "page": page,
        "events": EVENTS,
        "deployments": deployments,
        "chosen": {"deployment": slug, "event": event},
        "errors": errors,
        "upcoming": changes.filter(status=ScheduledChange.Status.PENDING)
                           .order_by("effective_at", "id")[:50],
        "held": changes.filter(status=ScheduledChange.Status.HELD)
                       .order_by("-effective_at", "-id")[:20],
    }, status=400 if errors else 200)
