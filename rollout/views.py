"""Admin pages of a deployment: its rollout policy and the model-versus-human report."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from reviewplatform.models import Deployment

from .selectors import deployment_report, policy_current

ADMIN_PERM = "rollout.view_policyversion"


@require_GET
@permission_required(ADMIN_PERM, raise_exception=True)
def rollout_page(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_object_or_404(Deployment, slug=slug)
    return render(request, "rollout/rollout.html", {
        "deployment": deployment,
        "policy": policy_current(deployment_id=deployment.pk),
        "history": deployment.policy_versions.select_related("author").order_by("-version"),
        "model_versions": deployment.model_versions.order_by("-is_champion", "name"),
        "regions": deployment.regions.all(),
    })


@require_GET
@permission_required(ADMIN_PERM, raise_exception=True)
def report_page(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_object_or_404(Deployment, slug=slug)
    report = deployment_report(deployment=deployment)
    return render(request, "rollout/report.html", {
        "deployment": deployment,
        "report": report,
        "rows": list(zip(report.labels, report.confusion, strict=True)),
    })
