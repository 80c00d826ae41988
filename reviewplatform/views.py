"""The reviewer's web pages: dashboards, claim, review a case, answer, skip, keep the lease."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.db.models import Count
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from inference.models import Prediction
from inference.ood import MODEL_OUTPUT_REASONS, OodReason
from review.guidelines import guideline_examples, guidelines_html
from review.keys import label_keys
from review.pending import Pending
from review.selectors import (
    RecentAnswer,
    human_agreement,
    queue_backlog,
    queue_counts,
    queue_peek_next,
    reveal_effect,
    reviewer_answers_since,
    reviewer_figures,
    reviewer_recent,
    reviewers_active,
    similar_decided_cases,
)
from review.services import (
    answers_pending,
    review_answer_pend,
    review_claim_next,
    review_lease_renew,
    review_release,
    review_undo,
    task_review_mode,
    task_shown_reason,
)

from .converters import id_parse
from .errors import ServiceError
from .models import Case, Deployment, Review, ReviewMode, ReviewTask
from .selectors import audits_waiting, cases_stuck
from .tasks import pending_answers_store_at

REVIEW_PERM = "reviewplatform.add_review"
TEAM_PERM = "reviewplatform.view_team_figures"
SKIPPED_SESSION_KEY = "skipped_tasks"


def _user(request: HttpRequest) -> User:
    """The logged-in user (every view here requires a login)."""
    return cast(User, request.user)


SESSION_KEY = "review_session"


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The reviewer's dashboard: the queue by reason and their own figures."""
    user = _user(request)
    deployments = Deployment.objects.annotate(n_cases=Count("cases")).order_by("slug")
    (mine,) = reviewer_figures(reviewers=User.objects.filter(pk=user.pk))
    return render(request, "review/home.html", {
        "queue": queue_counts(),
        "audits": audits_waiting(),
        "audit_within_minutes": settings.AUDIT_SERVE_WITHIN_SECONDS / 60,
        "deployments": deployments,
        "count_today": mine.today,
        "session_goal": (request.session.get(SESSION_KEY) or {}).get(
            "goal", settings.REVIEW_SESSION_GOAL),
        "mine": mine,
        "can_review": user.has_perm(REVIEW_PERM),
        "can_see_team": user.has_perm(TEAM_PERM),
        "pending": _undoable(answers_pending(reviewer=user)),
    })


@require_GET
@login_required
@permission_required(TEAM_PERM, raise_exception=True)
def team(request: HttpRequest) -> HttpResponse:
    """Senior reviewers' and admins' dashboard: every reviewer, the backlog, agreement."""
    return render(request, "review/team.html", {
        "reviewers": reviewer_figures(reviewers=reviewers_active()),
        "backlog": queue_backlog(),
        "queue": queue_counts(),
        "audits": audits_waiting(),
        "audit_within_minutes": settings.AUDIT_SERVE_WITHIN_SECONDS / 60,
        "human_agreement": human_agreement(),
        "reveal": reveal_effect(),
        "stuck": cases_stuck(),
        "stuck_minutes": settings.CASE_STUCK_ALERT_SECONDS / 60,
        "now": timezone.now(),
    })


def _go_next(request: HttpRequest) -> HttpResponse:
    task = review_claim_next(reviewer=_user(request),
                             skipped=request.session.get(SKIPPED_SESSION_KEY, []))
    if task is None:
        messages.info(request, "The queue is empty: every case is taken or answered.")
        return redirect("review-home")
    return redirect("review-task", task_id=task.pk)


def _review_session(request: HttpRequest, *, goal: str | None = None) -> dict[str, Any]:
    """The reviewer's session: when it started and its goal (answers). Starting from the
    dashboard with a goal starts a new one; otherwise the current one, or a new one with the
    default goal after REVIEW_SESSION_HOURS."""
    now = timezone.now()
    current = request.session.get(SESSION_KEY)
    stale = (current is None or datetime.fromisoformat(current["started"])
             < now - timedelta(hours=settings.REVIEW_SESSION_HOURS))
    if goal is not None or stale:
        try:
            target = int(goal or settings.REVIEW_SESSION_GOAL)
        except ValueError:
            target = settings.REVIEW_SESSION_GOAL
        current = {"started": now.isoformat(), "goal": min(max(target, 1), 1000)}
        request.session[SESSION_KEY] = current
    return cast(dict[str, Any], current)


@require_POST
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_next(request: HttpRequest) -> HttpResponse:
    if "goal" in request.POST:
        _review_session(request, goal=request.POST["goal"])
    return _go_next(request)


def _model_answer(case: Case) -> dict[str, object] | None:
    prediction = (Prediction.objects.filter(case=case, model_version__is_champion=True)
                  .order_by("-created_at").first())
    if prediction is None:
        return None
    if prediction.status != Prediction.Status.OK:
        return {"failed": True}
    return {"label": prediction.label, "confidence": prediction.confidence}


def _ood_reasons(case: Case, *, blind: bool) -> list[str]:
    """Why the champion found the case out of domain. Blind review shows a reason read from
    the model's own output without its figures, which would give the model's answer away."""
    prediction = Prediction.objects.filter(case=case, model_version__is_champion=True).first()
    reasons = prediction.ood_reasons if prediction else []
    return [OodReason(reason["code"]).label if blind and reason["code"] in MODEL_OUTPUT_REASONS
            else reason["text"] for reason in reasons]


@require_GET
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_task(request: HttpRequest, task_id: int) -> HttpResponse:
    task = get_object_or_404(ReviewTask.objects.select_related("case__region", "case__deployment",
                                                               "policy_version"),
                             pk=task_id)
    if (task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != request.user.pk
            or task.lease_expires_at is None or task.lease_expires_at < timezone.now()):
        messages.warning(request, "That case is no longer held by you; here is the next one.")
        return _go_next(request)
    if task.pending_until is not None:
        messages.info(request, f"Your answer to case {task.case_id} is being stored; undo it "
                               "(Backspace) to change it.")
        return _go_next(request)
    case = task.case
    labels = case.deployment.labels
    shortcuts = label_keys(labels, case.deployment.label_keys)
    mode = task_review_mode(task)
    revealing = mode == ReviewMode.REVEALED and bool(task.blind_answer)
    shows_model = mode == ReviewMode.ASSISTED or revealing
    reason = task_shown_reason(task)
    local = case.captured_at_local
    lease = settings.REVIEW_LEASE_SECONDS
    session = _review_session(request)
    pending = answers_pending(reviewer=_user(request))
    done = len(pending) + reviewer_answers_since(
        reviewer=_user(request), since=datetime.fromisoformat(session["started"]))
    return render(request, "review/task.html", {
        "task": task,
        "case": case,
        # Formatted here: the template engine would convert it back to the server's zone.
        "local_time": local.strftime("%Y-%m-%d %H:%M"),
        "local_weekday": local.strftime("%A"),
        "utc_offset": local.strftime("%z"),
        "utc_time": case.captured_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "reason": reason,
        "reason_label": ReviewTask.Reason(reason).label,
        "ood_reasons": (_ood_reasons(case, blind=not shows_model)
                        if reason == ReviewTask.Reason.OUT_OF_DOMAIN else []),
        "buttons": list(zip(labels, shortcuts, strict=True)),
        "cannot_tell": Review.CANNOT_TELL,
        "out_of_domain": Review.OUT_OF_DOMAIN,
        "mode": mode,
        "revealing": revealing,
        "model": _model_answer(case) if shows_model else None,
        # Only once the model's answer shows: before a blind answer they would give it away.
        "similar": (similar_decided_cases(case_id=case.pk, deployment_id=case.deployment_id)
                    if shows_model else []),
        "next_case_id": queue_peek_next(reviewer=_user(request), after=task),
        "renew_every_ms": max(2, lease // 4) * 1000,
        "session_goal": session["goal"],
        "session_done": done,
        "session_percent": min(100, round(100 * done / session["goal"])),
        "recent": [*(RecentAnswer(case_id=p.case_id, answer=p.answer, at=p.given_at,
                                  pending=True) for p in pending),
                   *reviewer_recent(reviewer=_user(request))][:5],
        "pending": _undoable(pending),
        "guidelines": guidelines_html(case.deployment.guidelines),
        "examples": guideline_examples(deployment_id=case.deployment_id),
    })


def _undoable(pending: list[Pending]) -> Pending | None:
    """The latest answer still in its undo window, if any."""
    return pending[0] if pending and pending[0].until > timezone.now() else None


def _lease_token(request: HttpRequest) -> uuid.UUID | None:
    try:
        return uuid.UUID(request.POST.get("lease_token", ""))
    except ValueError:
        return None


@require_POST
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_answer_view(request: HttpRequest, task_id: int) -> HttpResponse:
    token = _lease_token(request)
    if token is None:
        return HttpResponse("missing or malformed lease_token", status=400)
    try:
        given = review_answer_pend(task_id=task_id, lease_token=token, reviewer=_user(request),
                                   answer=request.POST.get("answer", ""))
    except ServiceError as exc:
        if exc.status_code == 400:
            return HttpResponse(exc.message, status=400)
        messages.error(request, exc.message)
        return _go_next(request)
    if given is None:  # blind answer recorded: now the model's answer is revealed
        return redirect("review-task", task_id=task_id)
    pending_answers_store_at(given.until, task_id=given.task_id)
    return _go_next(request)


@require_POST
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_undo_view(request: HttpRequest) -> HttpResponse:
    """Take back one's latest answer within its undo window and answer that case again; the
    case on screen (`task_id` with its `lease_token`, when given) goes back to the queue."""
    try:
        undone = review_undo(reviewer=_user(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return _go_next(request)
    token = _lease_token(request)
    current = id_parse(request.POST.get("task_id", ""))
    if token is not None and current is not None and current != undone.task_id:
        # A case on screen that was no longer the reviewer's has nothing to hand back.
        with contextlib.suppress(ServiceError):
            review_release(task_id=current, lease_token=token, reviewer=_user(request))
    messages.info(request, f"Your answer {undone.answer} to case {undone.case_id} was taken "
                           "back: answer it again.")
    return redirect("review-task", task_id=undone.task_id)


def _release(request: HttpRequest, task_id: int) -> HttpResponse | None:
    """Give the task back to the queue; a 400 response when the lease token is unusable."""
    token = _lease_token(request)
    if token is None:
        return HttpResponse("missing or malformed lease_token", status=400)
    try:
        review_release(task_id=task_id, lease_token=token, reviewer=_user(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    return None


@require_POST
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_skip(request: HttpRequest, task_id: int) -> HttpResponse:
    refused = _release(request, task_id)
    if refused is not None:
        return refused
    skipped = request.session.get(SKIPPED_SESSION_KEY, [])
    request.session[SKIPPED_SESSION_KEY] = [*skipped[-99:], task_id]
    return _go_next(request)


@require_POST
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_stop(request: HttpRequest, task_id: int) -> HttpResponse:
    """Stop reviewing: the case goes back to the queue at once."""
    return _release(request, task_id) or redirect("review-home")


@require_POST
@login_required
@permission_required(REVIEW_PERM, raise_exception=True)
def review_lease(request: HttpRequest, task_id: int) -> JsonResponse:
    """Keep the lease while the page is open (JSON). `closing=1`: the page is going away; keep
    the case only for a short grace, so a reload finds it and a closed tab hands it back."""
    token = _lease_token(request)
    if token is None:
        return JsonResponse({"error": "missing or malformed lease_token"}, status=400)
    closing = request.POST.get("closing") == "1"
    try:
        task = review_lease_renew(
            task_id=task_id, lease_token=token, reviewer=_user(request),
            seconds=getattr(settings, "REVIEW_LEASE_CLOSE_GRACE_SECONDS", 15) if closing else None)
    except ServiceError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status_code)
    assert task.lease_expires_at is not None
    return JsonResponse({"lease_expires_at": task.lease_expires_at.isoformat()})


@require_GET
@login_required
def case_image(request: HttpRequest, case_id: int) -> HttpResponseBase:
    """Case images are private: served only to users who may see the case."""
    if not request.user.has_perm("reviewplatform.view_case"):
        raise Http404
    case = get_object_or_404(Case, pk=case_id)
    if case.image_deleted_at is not None:
        return HttpResponse("This case's image was deleted under its deployment's retention.",
                            status=410, content_type="text/plain")
    response = FileResponse(case.image.open("rb"))
    response["Cache-Control"] = "private, max-age=3600"
    return response
