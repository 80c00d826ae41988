"""The reviewer's web pages: queue overview, claim, review a case, answer or skip."""

from __future__ import annotations

import uuid
from typing import cast

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from .errors import ServiceError
from .models import Case, Deployment, Review, ReviewTask
from .selectors import queue_counts, reviewer_count_today
from .services import review_claim_next, review_release, review_submit

REVIEW_PERM = "reviewplatform.add_review"
SKIPPED_SESSION_KEY = "skipped_tasks"


def _user(request: HttpRequest) -> User:
    """The logged-in user (every view here requires a login)."""
    return cast(User, request.user)


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    deployments = Deployment.objects.annotate(n_cases=Count("cases")).order_by("slug")
    return render(request, "review/home.html", {
        "queue": queue_counts(),
        "deployments": deployments,
        "count_today": reviewer_count_today(reviewer=_user(request)),
        "can_review": request.user.has_perm(REVIEW_PERM),
    })


def _go_next(request: HttpRequest) -> HttpResponse:
    task = review_claim_next(reviewer=_user(request),
                             skipped=request.session.get(SKIPPED_SESSION_KEY, []))
    if task is None:
        messages.info(request, "The queue is empty: every case is taken or answered.")
        return redirect("review-home")
    return redirect("review-task", task_id=task.pk)


@require_POST
@permission_required(REVIEW_PERM, raise_exception=True)
def review_next(request: HttpRequest) -> HttpResponse:
    return _go_next(request)


@require_GET
@permission_required(REVIEW_PERM, raise_exception=True)
def review_task(request: HttpRequest, task_id: int) -> HttpResponse:
    task = get_object_or_404(ReviewTask.objects.select_related("case__region", "case__deployment"),
                             pk=task_id)
    if (task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != request.user.pk
            or task.lease_expires_at is None or task.lease_expires_at < timezone.now()):
        messages.warning(request, "That case is no longer held by you; here is the next one.")
        return _go_next(request)
    labels = task.case.deployment.labels
    shortcuts = [str(i + 1) if i < 9 else "0" if i == 9 else "" for i in range(len(labels))]
    return render(request, "review/task.html", {
        "task": task,
        "case": task.case,
        # Formatted here: the template engine would convert it back to the server's zone.
        "local_time": task.case.captured_at_local.strftime("%Y-%m-%d %H:%M"),
        "utc_offset": task.case.captured_at_local.strftime("%z"),
        "buttons": list(zip(labels, shortcuts, strict=True)),
        "cannot_tell": Review.CANNOT_TELL,
        "out_of_domain": Review.OUT_OF_DOMAIN,
    })


def _lease_token(request: HttpRequest) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.POST.get("lease_token", ""))
    except ValueError:
        return None


@require_POST
@permission_required(REVIEW_PERM, raise_exception=True)
def review_answer(request: HttpRequest, task_id: int) -> HttpResponse:
    token = _lease_token(request)
    if token is None:
        return HttpResponse("missing or malformed lease_token", status=400)
    try:
        review_submit(task_id=task_id, lease_token=token, reviewer=_user(request),
                      answer=request.POST.get("answer", ""))
    except ServiceError as exc:
        if exc.status_code == 400:
            return HttpResponse(exc.message, status=400)
        messages.error(request, exc.message)
    return _go_next(request)


@require_POST
@permission_required(REVIEW_PERM, raise_exception=True)
def review_skip(request: HttpRequest, task_id: int) -> HttpResponse:
    token = _lease_token(request)
    if token is None:
        return HttpResponse("missing or malformed lease_token", status=400)
    try:
        review_release(task_id=task_id, lease_token=token, reviewer=_user(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    skipped = request.session.get(SKIPPED_SESSION_KEY, [])
    request.session[SKIPPED_SESSION_KEY] = [*skipped[-99:], task_id]
    return _go_next(request)


@require_GET
@login_required
def case_image(request: HttpRequest, case_id: int) -> FileResponse:
    """Case images are private: served only to users who may see the case."""
    if not request.user.has_perm("reviewplatform.view_case"):
        raise Http404
    case = get_object_or_404(Case, pk=case_id)
    response = FileResponse(case.image.open("rb"))
    response["Cache-Control"] = "private, max-age=3600"
    return response
