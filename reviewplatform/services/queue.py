"""The review queue: tasks, claims under a lease, and answers.

Serving order: urgent tasks first (the champion predicted one of the deployment's urgent
labels), then by the reason's priority (`REVIEW_REASON_PRIORITY`), then by a manual boost
(`priority`), then oldest first. A reviewer never gets a case they already answered.

The review chain (when an answer decides a case, which review comes next) is in
`review_chain`; the PostgreSQL statements of claims and answers in `queue_postgresql`.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from ..errors import Conflict, NotFound, ServiceError
from ..models import Case, Decision, Deployment, GoldCase, Review, ReviewMode, ReviewTask
from . import queue_postgresql, review_chain

logger = logging.getLogger(__name__)

ESCALATION_PERM = "reviewplatform.review_escalation"

REASON_PRIORITY_DEFAULT: dict[str, int] = {
    # A case whose review chain has started waits for its conclusion: finish those first.
    ReviewTask.Reason.ESCALATION: 60,
    ReviewTask.Reason.SECOND_OPINION: 50,
    # Signals of domain shift or a broken model: look early.
    ReviewTask.Reason.OUT_OF_DOMAIN: 40,
    ReviewTask.Reason.MODEL_FAILED: 35,
    ReviewTask.Reason.LOW_CONFIDENCE: 30,
    ReviewTask.Reason.OUT_OF_SCOPE: 20,
    ReviewTask.Reason.PAUSED: 20,
    ReviewTask.Reason.SHADOW: 20,
    # The model's decision already stands.
    ReviewTask.Reason.AUDIT: 10,
    ReviewTask.Reason.GOLD: 0,
}

# Independence is the point of these: the model's answer is never shown.
ALWAYS_BLIND = {ReviewTask.Reason.AUDIT, ReviewTask.Reason.SECOND_OPINION,
                ReviewTask.Reason.ESCALATION}

SERVING_ORDER = (F("urgent").desc(), F("reason_rank").desc(nulls_last=True),
                 F("priority").desc(), "created_at", "id")


def reason_priority(reason: str) -> int:
    """The configured priority of a reason (settings.REVIEW_REASON_PRIORITY over the defaults)."""
    table = {**REASON_PRIORITY_DEFAULT, **getattr(settings, "REVIEW_REASON_PRIORITY", {})}
    return int(table.get(reason, 0))


def _champion_labels(case_ids: Iterable[int]) -> dict[int, Any]:
    """The champion's successful prediction of each case, by case id."""
    from inference.models import Prediction

    predictions = Prediction.objects.filter(case_id__in=list(case_ids),
                                            model_version__is_champion=True,
                                            status=Prediction.Status.OK)
    return {prediction.case_id: prediction for prediction in predictions}


def review_task_create(
    *,
    case: Case,
    reason: str,
    policy_version: Any,
    rule: str = "",
    follows: Review | None = None,
    urgent: bool | None = None,
) -> ReviewTask:
    """Queue a case for a human, ranked for serving.

    `urgent` None: urgent when the champion predicted one of the deployment's urgent labels.
    """
    if reason not in ReviewTask.Reason.values:
        raise ServiceError(f"unknown review reason {reason!r}", field="reason")
    if urgent is None:
        prediction = _champion_labels([case.pk]).get(case.pk)
        urgent = prediction is not None and prediction.label in case.deployment.urgent_labels
    return ReviewTask.objects.create(case=case, reason=reason, policy_version=policy_version,
                                     rule=rule, follows=follows, urgent=urgent,
                                     reason_rank=reason_priority(reason))


def review_tasks_rank(*, limit: int = 500) -> int:
    """Rank tasks written without `review_task_create` (urgency and reason priority).

    Runs before every claim; with nothing to rank it is one probe of a partial index.
    Rows another claim is ranking are skipped, so concurrent claims never wait here.
    """
    unranked = ReviewTask.objects.filter(reason_rank__isnull=True)
    if not unranked.exists():
        return 0
    with transaction.atomic():
        tasks = list(unranked.select_for_update(skip_locked=True, of=("self",))
                     .select_related("case__deployment").order_by("id")[:limit])
        predictions = _champion_labels(task.case_id for task in tasks)
        for task in tasks:
            prediction = predictions.get(task.case_id)
            task.urgent = (prediction is not None
                           and prediction.label in task.case.deployment.urgent_labels)
            task.reason_rank = reason_priority(task.reason)
        ReviewTask.objects.bulk_update(tasks, ["urgent", "reason_rank"])
    return len(tasks)


def _queue_for(reviewer: User) -> QuerySet[ReviewTask]:
    """Tasks this reviewer may take: not a case they answered; escalations only for seniors."""
    tasks = ReviewTask.objects.filter(
        ~Exists(Review.objects.filter(case_id=OuterRef("case_id"), reviewer=reviewer)))
    if not reviewer.has_perm(ESCALATION_PERM):
        tasks = tasks.exclude(reason=ReviewTask.Reason.ESCALATION)
    return tasks.exclude(reason=ReviewTask.Reason.GOLD)


def _serving_key(task: ReviewTask) -> tuple:
    rank = task.reason_rank if task.reason_rank is not None else -(10**9)
    return (not task.urgent, -rank, -task.priority, task.created_at, task.pk)


def _next_claimable(*, reviewer: User, skipped: list[int], now: datetime
                    ) -> ReviewTask | None:
    """The first task in serving order that no other claim holds, open or with an expired lease.

    Open tasks and expired leases are looked up apart, each down its own partial index, so
    neither lookup grows with the queue; skipped tasks (ids) only when nothing else is left.
    """
    queue = (_queue_for(reviewer).select_for_update(skip_locked=True, of=("self",))
             .select_related("case__deployment").order_by(*SERVING_ORDER))
    waiting = queue.filter(status=ReviewTask.Status.OPEN)
    expired = queue.filter(status=ReviewTask.Status.CLAIMED, lease_expires_at__lt=now)
    for exclude in ([skipped, []] if skipped else [[]]):
        found = [task for task in (
            (waiting.exclude(id__in=exclude) if exclude else waiting).first(),
            (expired.exclude(id__in=exclude) if exclude else expired).first(),
        ) if task is not None]
        if found:
            return min(found, key=_serving_key)
    return None


def _gold_instead(*, reviewer: User, deployment: Deployment, policy_version_id: int,
                  rng: Callable[[], float]) -> ReviewTask | None:
    """At the deployment's gold rate, a gold case the reviewer has not answered, as a new task."""
    if deployment.gold_rate <= 0 or rng() >= deployment.gold_rate:
        return None
    gold = (GoldCase.objects.filter(is_active=True, case__deployment=deployment)
            .exclude(Exists(Review.objects.filter(case_id=OuterRef("case_id"),
                                                  reviewer=reviewer)))
            .order_by("?").first())
    if gold is None:
        return None
    return ReviewTask(case_id=gold.case_id, reason=ReviewTask.Reason.GOLD,
                      policy_version_id=policy_version_id,
                      reason_rank=reason_priority(ReviewTask.Reason.GOLD))


def review_claim_next(
    *,
    reviewer: User,
    skipped: Iterable[int] = (),
    now: datetime | None = None,
    rng: Callable[[], float] = random.random,
) -> ReviewTask | None:
    """Hand the reviewer the next task under a fresh lease, or None when the queue is empty.

    A task the reviewer already holds is handed back first (a reloaded page keeps its case).
    Cases the reviewer already answered are never handed to them again; tasks they skipped
    (`skipped`, task ids) come last. On PostgreSQL the candidate rows are read with
    `FOR UPDATE SKIP LOCKED`: two claims at once never take the same task, nor wait.
    """
    now = now or timezone.now()
    lease = timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
    if connection.vendor == "postgresql":
        return queue_postgresql.claim_next(reviewer=reviewer, skipped=list(skipped), now=now,
                                      lease=lease, rng=rng)
    review_tasks_rank()
    with transaction.atomic():
        task = (ReviewTask.objects.select_for_update(of=("self",))
                .filter(status=ReviewTask.Status.CLAIMED, claimed_by=reviewer,
                        lease_expires_at__gte=now)
                .order_by("claimed_at").first())
        if task is not None:
            task.lease_expires_at = now + lease
            task.save(update_fields=["lease_expires_at"])
            return task
        task = _next_claimable(reviewer=reviewer, skipped=list(skipped), now=now)
        if task is None:
            return None
        return lease_new(task, reviewer=reviewer, now=now, lease=lease, rng=rng)


def lease_new(candidate: ReviewTask, *, reviewer: User, now: datetime, lease: timedelta,
               rng: Callable[[], float]) -> ReviewTask:
    """Lease the candidate (locked by the caller) to the reviewer, or a gold case instead."""
    task = _gold_instead(reviewer=reviewer, deployment=candidate.case.deployment,
                         policy_version_id=candidate.policy_version_id, rng=rng) or candidate
    task.status = ReviewTask.Status.CLAIMED
    task.claimed_by = reviewer  # type: ignore[assignment]
    task.claimed_at = now
    task.lease_token = uuid.uuid4()
    task.lease_expires_at = now + lease
    task.blind_answer = ""
    if task.pk is None:
        task.save()
    else:
        task.save(update_fields=["status", "claimed_by", "claimed_at", "lease_token",
                                 "lease_expires_at", "blind_answer"])
    return task


def _task_for_holder(*, task_id: int, lease_token: uuid.UUID, reviewer: User,
                     related: tuple[str, ...] = ()) -> ReviewTask:
    """Lock the task and check that the reviewer still holds its lease (the fencing token).

    A lease that ran out but that nobody else took is still the reviewer's.
    """
    task = (ReviewTask.objects.select_for_update(of=("self",)).select_related(*related)
            .filter(id=task_id).first())
    holder_check(task, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    assert task is not None
    return task


def holder_check(task: ReviewTask | None, *, task_id: int, lease_token: uuid.UUID,
                  reviewer: User) -> None:
    if task is None:
        raise NotFound(f"review task {task_id} does not exist")
    if task.status == ReviewTask.Status.DONE:
        raise Conflict("this case has already been answered")
    if (task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != reviewer.pk
            or task.lease_token != lease_token):
        raise Conflict("your lease on this case has passed to another reviewer; "
                       "your answer was not stored")


def review_lease_renew(
    *,
    task_id: int,
    lease_token: uuid.UUID,
    reviewer: User,
    seconds: int | None = None,
    now: datetime | None = None,
) -> ReviewTask:
    """Extend the holder's lease to `seconds` from now (default: a full lease).

    The review page renews while it is open; when it closes it asks for a short grace instead,
    so that a closed tab hands its case back within seconds while a reload keeps it.
    """
    now = now or timezone.now()
    full = settings.REVIEW_LEASE_SECONDS
    seconds = full if seconds is None else max(0, min(seconds, full))
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer)
        task.lease_expires_at = now + timedelta(seconds=seconds)
        task.save(update_fields=["lease_expires_at"])
    return task


def review_release(*, task_id: int, lease_token: uuid.UUID, reviewer: User) -> None:
    """Give a claimed task back to the queue at once (skip, or stop reviewing)."""
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer)
        if task.reason == ReviewTask.Reason.GOLD:
            task.delete()  # made for this reviewer's claim; the gold case stays gold
            return
        task.status = ReviewTask.Status.OPEN
        task.claimed_by = None
        task.claimed_at = None
        task.lease_token = None
        task.lease_expires_at = None
        task.blind_answer = ""
        task.save(update_fields=["status", "claimed_by", "claimed_at", "lease_token",
                                 "lease_expires_at", "blind_answer"])


def task_shown_reason(task: ReviewTask) -> str:
    """The reason the reviewer is shown: a gold task shows the reason its case first came in."""
    if task.reason != ReviewTask.Reason.GOLD:
        return task.reason
    first = (ReviewTask.objects.filter(case_id=task.case_id)
             .exclude(reason=ReviewTask.Reason.GOLD).order_by("created_at", "id")
             .values_list("reason", flat=True).first())
    return first or ReviewTask.Reason.SHADOW


def task_review_mode(task: ReviewTask) -> str:
    """How the task is shown: audits, second opinions and escalations always blind."""
    return review_mode_for(task, deployment_mode=task.case.deployment.review_mode)


def review_mode_for(task: ReviewTask, *, deployment_mode: str) -> str:
    if task_shown_reason(task) in ALWAYS_BLIND:
        return ReviewMode.BLIND
    return deployment_mode


def answer_check(answer: str, *, labels: list[str]) -> None:
    allowed = [*labels, Review.CANNOT_TELL, Review.OUT_OF_DOMAIN]
    if answer not in allowed:
        raise ServiceError(f"answer {answer!r} is not one of {', '.join(allowed)}",
                           field="answer")


def review_answer(
    *,
    task_id: int,
    lease_token: uuid.UUID,
    reviewer: User,
    answer: str,
    now: datetime | None = None,
) -> Review | None:
    """The answer given on the review page.

    In blind-then-reveal mode the first answer is only recorded (None is returned, and the page
    then shows the model's answer); the next one, revised or not, is the Review.
    """
    if connection.vendor == "postgresql":
        return queue_postgresql.answer(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                                  answer=answer, mode=None, now=now or timezone.now(),
                                  blind_first=True)
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                                related=("case__deployment",))
        answer_check(answer, labels=task.case.deployment.labels)
        if task_review_mode(task) == ReviewMode.REVEALED and not task.blind_answer:
            task.blind_answer = answer
            task.save(update_fields=["blind_answer"])
            return None
        return review_submit(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                             answer=answer, now=now)


def review_submit(
    *,
    task_id: int,
    lease_token: uuid.UUID,
    reviewer: User,
    answer: str,
    mode: str | None = None,
    now: datetime | None = None,
) -> Review:
    """Store a reviewer's answer and take the case's review chain one step (module docstring).

    `mode` None: the mode the task is shown in (blind, assisted, or revealed when a blind
    answer was recorded first).
    """
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        review = queue_postgresql.answer(task_id=task_id, lease_token=lease_token,
                                    reviewer=reviewer, answer=answer, mode=mode, now=now,
                                    blind_first=False)
        assert review is not None
        return review
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                                related=("case__deployment", "policy_version", "follows"))
        deployment = task.case.deployment
        answer_check(answer, labels=deployment.labels)
        if mode is None:
            mode = Review.Mode.REVEALED if task.blind_answer else task_review_mode(task)
        if mode not in Review.Mode.values:
            raise ServiceError(f"unknown review mode {mode!r}", field="mode")
        claimed_at = task.claimed_at or now
        review = Review.objects.create(task=task, case=task.case, reviewer=reviewer,
                                       answer=answer, mode=mode, blind_answer=task.blind_answer,
                                       seconds=max(0.0, (now - claimed_at).total_seconds()))
        task.status = ReviewTask.Status.DONE
        task.completed_at = now
        task.lease_expires_at = None
        task.save(update_fields=["status", "completed_at", "lease_expires_at"])

        def champion() -> tuple[str, float | None] | None:
            prediction = _champion_labels([task.case_id]).get(task.case_id)
            return None if prediction is None else (prediction.label, prediction.confidence)

        follow_up = review_chain.follow_up_reason(
            task=task, answer=answer, labels=deployment.labels,
            second_opinion_rate=deployment.second_opinion_rate,
            threshold=task.policy_version.confidence_threshold, champion=champion,
            first_answer=lambda: review_chain.first_answer(task))
        if follow_up is not None:
            follow_up_create(task=task, reason=follow_up, review=review)
        elif (task.reason != ReviewTask.Reason.GOLD
              and not Decision.objects.filter(case_id=task.case_id).exists()):
            Decision.objects.create(case=task.case, label=review.answer,
                                    source=Decision.Source.HUMAN,
                                    policy_version=task.policy_version, rule=task.rule,
                                    review=review)
            Case.objects.filter(pk=task.case_id).update(status=Case.Status.DECIDED,
                                                        updated_at=now)
    return review


def follow_up_create(*, task: ReviewTask, reason: str, review: Review) -> None:
    """Queue the second opinion or escalation: it keeps the case's urgency."""
    ReviewTask.objects.create(case_id=task.case_id, reason=reason,
                              policy_version_id=task.policy_version_id, rule=task.rule,
                              follows=review, urgent=task.urgent,
                              reason_rank=reason_priority(reason))
    logger.info("case %s: %s after review %s", task.case_id, reason, review.pk)
