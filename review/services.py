"""The review queue's writes: claims under a lease, lease renewals, hand-backs and answers.

A reviewer claims the next task (`review_claim_next`, see `claims`), holds it under a lease that
the page renews, and answers it (`review_answer_pend`, held for undo by `pending`, or
`review_submit`, see `answers`); the review
chain (`chain`) decides whether the answer concludes the case or needs another review. Every
change of a case's state goes through `reviewplatform.lifecycle`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from reviewplatform import lifecycle
from reviewplatform.errors import Conflict
from reviewplatform.models import Case, Review, ReviewTask

from . import answers, claims, pending
from .rules import holder_check, review_mode_for, task_shown_reason

__all__ = [
    "answers_pending",
    "pending_answers_store",
    "review_answer_pend",
    "review_claim_next",
    "review_lease_renew",
    "review_release",
    "review_submit",
    "review_task_create",
    "review_tasks_rank",
    "review_undo",
    "task_review_mode",
    "task_shown_reason",
]

review_tasks_rank = claims.review_tasks_rank
pending_answers_store = pending.pending_answers_store
answers_pending = pending.answers_pending


def review_task_create(*, case: Case, reason: str, policy_version: Any, rule: str = "",
                       urgent: bool | None = None) -> ReviewTask:
    """Queue a case for a human by hand. `urgent` None: urgent when the champion predicted one
    of the deployment's urgent labels."""
    if urgent is None:
        label = claims.champion_labels([case.pk]).get(case.pk)
        urgent = lifecycle.is_urgent(label, case.deployment.urgent_labels)
    return lifecycle.review_task_open(case_id=case.pk, reason=reason,
                                      policy_version_id=policy_version.pk, rule=rule,
                                      urgent=urgent)


def review_claim_next(
    *,
    reviewer: User,
    skipped: Iterable[int] = (),
    now: datetime | None = None,
    rng: Callable[[], float] = random.random,
) -> ReviewTask | None:
    """Hand the reviewer the next task under a fresh lease, or None when the queue is empty.

    A task the reviewer already holds is handed back first (a reloaded page keeps its case).
    An audit waiting longer than `AUDIT_SERVE_WITHIN_SECONDS` comes before every task that is
    not urgent. Cases the reviewer already answered are never handed to them again; tasks they
    skipped (`skipped`, task ids) come last.
    """
    now = now or timezone.now()
    return claims.claim_next(
        reviewer=reviewer, skipped=list(skipped), now=now,
        lease=timedelta(seconds=settings.REVIEW_LEASE_SECONDS),
        audit_within=timedelta(seconds=settings.AUDIT_SERVE_WITHIN_SECONDS), rng=rng)


def _task_for_holder(*, task_id: int, lease_token: uuid.UUID, reviewer: User) -> ReviewTask:
    """Lock the task and check that the reviewer still holds its lease."""
    task = ReviewTask.objects.select_for_update(of=("self",)).filter(id=task_id).first()
    holder_check(task, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    assert task is not None
    return task


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
        if task.pending_until is not None:
            raise Conflict("your answer to this case is waiting out its undo window; "
                           "undo it first to hand the case back")
        lifecycle.review_task_hand_back(task)


def task_review_mode(task: ReviewTask) -> str:
    """How the task is shown: audits, second opinions and escalations always blind."""
    return review_mode_for(task, deployment_mode=task.case.deployment.review_mode)


def review_answer_pend(
    *,
    task_id: int,
    lease_token: uuid.UUID,
    reviewer: User,
    answer: str,
    now: datetime | None = None,
) -> pending.Pending | None:
    """The answer given on the review page, kept for `REVIEW_UNDO_SECONDS` (see `pending`)
    before it is stored; None for the blind answer of blind-then-reveal, recorded at once."""
    return pending.answer_pend(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                               answer=answer, now=now or timezone.now())


def review_undo(*, reviewer: User, now: datetime | None = None) -> pending.Pending:
    """Take back the reviewer's latest answer still in its undo window."""
    return pending.answer_undo(reviewer=reviewer, now=now or timezone.now())


def review_submit(
    *,
    task_id: int,
    lease_token: uuid.UUID,
    reviewer: User,
    answer: str,
    mode: str | None = None,
    now: datetime | None = None,
) -> Review:
    """Store a reviewer's answer and take the case's review chain one step (`chain`).

    `mode` None: the mode the task is shown in (blind, assisted, or revealed when a blind
    answer was recorded first).
    """
    review = answers.answer(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                            answer=answer, mode=mode, now=now or timezone.now(),
                            blind_first=False)
    assert review is not None
    return review
