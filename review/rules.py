"""Rules on one task that claims and answers share: who may hold it, what it shows, which
answers it takes."""

from __future__ import annotations

import uuid

from django.contrib.auth.models import User

from reviewplatform.errors import Conflict, NotFound, ServiceError
from reviewplatform.models import Review, ReviewMode, ReviewTask

ESCALATION_PERM = "reviewplatform.review_escalation"

# Independence is the point of these: the model's answer is never shown.
ALWAYS_BLIND = {ReviewTask.Reason.AUDIT, ReviewTask.Reason.SECOND_OPINION,
                ReviewTask.Reason.ESCALATION}


def holder_check(task: ReviewTask | None, *, task_id: int, lease_token: uuid.UUID,
                 reviewer: User) -> None:
    """The reviewer still holds the task's lease (the fencing token). A lease that ran out but
    that nobody else took is still the reviewer's."""
    if task is None:
        raise NotFound(f"review task {task_id} does not exist")
    if task.status == ReviewTask.Status.DONE:
        raise Conflict("this case has already been answered")
    if (task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != reviewer.pk
            or task.lease_token != lease_token):
        raise Conflict("your lease on this case has passed to another reviewer; "
                       "your answer was not stored")


def task_shown_reason(task: ReviewTask) -> str:
    """The reason the reviewer is shown: a gold task shows the reason its case first came in."""
    if task.reason != ReviewTask.Reason.GOLD:
        return task.reason
    first = (ReviewTask.objects.filter(case_id=task.case_id)
             .exclude(reason=ReviewTask.Reason.GOLD).order_by("created_at", "id")
             .values_list("reason", flat=True).first())
    return first or ReviewTask.Reason.SHADOW


def review_mode_for(task: ReviewTask, *, deployment_mode: str) -> str:
    """How the task is shown: audits, second opinions and escalations always blind."""
    if task_shown_reason(task) in ALWAYS_BLIND:
        return ReviewMode.BLIND
    return deployment_mode


def answer_check(answer: str, *, labels: list[str]) -> None:
    allowed = [*labels, Review.CANNOT_TELL, Review.OUT_OF_DOMAIN]
    if answer not in allowed:
        raise ServiceError(f"answer {answer!r} is not one of {', '.join(allowed)}",
                           field="answer")
