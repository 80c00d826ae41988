"""Pages and downloads of the reports: the disagreements gallery, adjudication, exports."""

from __future__ import annotations

import math
import re
from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_POST

from inference.permissions import may_see_reference_images
from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment

from . import exports, services
from .disagreements import disagreements, disagreements_count
from .filters import ReportFilters, report_filters_parse

REPORT_PERM = "rollout.view_policyversion"
PAGE = 48
# The highest page asked for that is read as it is: its offset stays far within bigint.
PAGE_MAX = 10**9


def filters_or_error(request: HttpRequest, deployment: Deployment
                     ) -> ReportFilters | HttpResponse:
    try:
        return report_filters_parse(deployment=deployment, params=request.GET)
    except ServiceError as error:
        return HttpResponseBadRequest(f"{error.field}: {error.message}",
                                      content_type="text/plain")


@require_GET
@login_required
def disagreements_page(request: HttpRequest, slug: str) -> HttpResponse:
    """Admins and senior reviewers (who adjudicate) see the gallery."""
    if not (request.user.has_perm(REPORT_PERM)
            or request.user.has_perm(services.ADJUDICATE_PERM)):
        raise PermissionDenied
    deployment = get_object_or_404(Deployment, slug=slug)
    f = filters_or_error(request, deployment)
    if isinstance(f, HttpResponse):
        return f
    human = request.GET.get("human", "")
    model = request.GET.get("model_label", "")
    labels = {"human": human if human in deployment.labels else "",
              "model": model if model in deployment.labels else ""}
    page = _page_asked(request.GET.get("page", ""))
    items = disagreements(f, **labels, limit=PAGE + 1, offset=(page - 1) * PAGE)
    if not items and page > 1:  # past the last page: the last one, as Paginator.get_page
        page = max(1, math.ceil(disagreements_count(f, **labels) / PAGE))
        items = disagreements(f, **labels, limit=PAGE + 1, offset=(page - 1) * PAGE)
    query = {**f.query(), "human": human, "model_label": model}
    query = {k: v for k, v in query.items() if v}
    return render(request, "rollout/disagreements.html", {
        "deployment": deployment, "filters": f, "items": items[:PAGE], "page": page,
        "human": human, "model_label": model,
        "next_query": urlencode({**query, "page": page + 1}) if len(items) > PAGE else "",
        "prev_query": urlencode({**query, "page": page - 1}) if page > 1 else "",
        "query": urlencode(query),
        "can_adjudicate": request.user.has_perm(services.ADJUDICATE_PERM),
        "can_see_references": may_see_reference_images(request.user),
    })


def _page_asked(text: str) -> int:
    """`?page=` as Paginator.get_page reads it: page 1 unless a whole number from 1; a
    number past the last page is settled once that page comes back empty."""
    digits = text.strip()
    if not re.fullmatch(r"[0-9]+", digits):
        return 1
    return max(1, int(digits) if len(digits) <= 9 else PAGE_MAX)


@require_POST
@login_required
@permission_required(services.ADJUDICATE_PERM, raise_exception=True)
def adjudicate(request: HttpRequest, slug: str, case_id: int) -> HttpResponse:
    deployment = get_object_or_404(Deployment, slug=slug)
    get_object_or_404(deployment.cases, pk=case_id)
    try:
        adjudication = services.case_adjudicate(
            case_id=case_id, label=request.POST.get("label", ""),
            actor=cast(User, request.user), reason=request.POST.get("reason", ""))
    except ServiceError as error:
        messages.error(request, f"case {case_id}: {error.message}")
    else:
        messages.success(request, f"Case {case_id} adjudicated {adjudication.label}.")
    back = request.POST.get("next", "")
    url = reverse("report-disagreements", args=[slug])
    return HttpResponseRedirect(f"{url}?{back}" if back and "//" not in back else url)


def _download(response: StreamingHttpResponse, name: str) -> StreamingHttpResponse:
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required
@permission_required(REPORT_PERM, raise_exception=True)
def export_decisions(request: HttpRequest, slug: str, fmt: str) -> HttpResponseBase:
    deployment = get_object_or_404(Deployment, slug=slug)
    f = filters_or_error(request, deployment)
    if isinstance(f, HttpResponse):
        return f
    if fmt not in ("csv", "json"):
        raise Http404
    if fmt == "csv":
        return _download(StreamingHttpResponse(exports.decisions_csv(f),
                                               content_type="text/csv; charset=utf-8"),
                         f"{slug}-decisions.csv")
    return _download(StreamingHttpResponse(exports.decisions_json(f),
                                           content_type="application/json"),
                     f"{slug}-decisions.json")


@require_GET
@login_required
@permission_required(REPORT_PERM, raise_exception=True)
def export_retraining(request: HttpRequest, slug: str) -> HttpResponseBase:
    deployment = get_object_or_404(Deployment, slug=slug)
    f = filters_or_error(request, deployment)
    if isinstance(f, HttpResponse):
        return f
    return _download(StreamingHttpResponse(exports.retraining_zip(f),
                                           content_type="application/zip"),
                     f"{slug}-retraining.zip")
