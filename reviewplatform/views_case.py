"""The case page: everything about one case, read-only, and the search that finds it.

Those who may see decisions (rollout admins, superusers) see every case; a reviewer sees the
cases they reviewed (never one still waiting for them: the page shows the model's answer, which
blind review hides); an API client, the cases it submitted."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, cast

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from inference.models import Prediction

from .api import CaseOutputSerializer
from .case_follow import cases_followed
from .converters import id_parse
from .models import Case, CaseEvent, Review, ReviewTask, WithdrawnAnswer
from .selectors import cases_visible_to

SEARCH_LIMIT = 50


def cases_on_pages(user: User) -> QuerySet[Case]:
    """The cases `user` may open on the case page (module docstring)."""
    reviewed = Case.objects.filter(
        pk__in=Review.objects.filter(reviewer=user).values("case_id"))
    return cases_followed(user=user, cases=cases_visible_to(user=user) | reviewed)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _timeline(timeline: dict[str, Any]) -> dict[str, Any]:
    """The API's timeline of the case, its times as moments for the page to show."""
    routed = timeline["routed"]
    return {"received": _moment(timeline["received"]),
            "predicted": _moment(timeline["predicted"]),
            "routed": {**routed, "at": _moment(routed["at"])} if routed else None,
            "claimed": _moment(timeline["claimed"]), "decided": _moment(timeline["decided"])}


@require_GET
@login_required
def case_page(request: HttpRequest, case_id: int) -> HttpResponse:
    case = cases_on_pages(cast(User, request.user)).filter(pk=case_id).first()
    if case is None:
        raise Http404(f"case {case_id} does not exist, or is not one you may open")
    predictions = (Prediction.objects.filter(case=case).select_related("model_version")
                   .order_by("-model_version__is_champion", "model_version__name"))
    for prediction in predictions:
        prediction.top = sorted((prediction.probabilities or {}).items(),  # type: ignore[attr-defined]
                                key=lambda item: -item[1])[:3]
    tasks = (ReviewTask.objects.filter(case=case).select_related("claimed_by", "policy_version")
             .order_by("created_at", "id"))
    reviews = (Review.objects.filter(case=case).select_related("reviewer", "task")
               .order_by("created_at", "id"))
    return render(request, "review/case.html", {
        "case": case,
        "metadata_json": json.dumps(case.metadata, indent=2, ensure_ascii=False),
        "zone": case.region.timezone,
        "timeline": _timeline(CaseOutputSerializer(case).data["timeline"]),
        "predictions": predictions,
        "tasks": tasks,
        "reviews": reviews,
        "withdrawn": (WithdrawnAnswer.objects.filter(case=case).select_related("reviewer")
                      .order_by("withdrawn_at", "id")),
        "events": CaseEvent.objects.filter(case=case).order_by("id"),
        "decision": getattr(case, "decision", None),
    })


@require_GET
@login_required
def case_search(request: HttpRequest) -> HttpResponse:
    """`?q=` a case id or an `external_id`: one match opens its page, several are listed."""
    query = request.GET.get("q", "").strip()
    matches: list[Case] = []
    if query:
        found = Q(external_id=query)
        case_id = id_parse(query)
        if case_id is not None:
            found |= Q(pk=case_id)
        matches = list(cases_on_pages(cast(User, request.user)).filter(found)[:SEARCH_LIMIT])
    if len(matches) == 1:
        return redirect("case-page", case_id=matches[0].pk)
    return render(request, "review/case_search.html", {"query": query, "matches": matches},
                  status=200 if matches or not query else 404)
