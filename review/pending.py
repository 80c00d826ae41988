"""Answers held for undo. An answer given on the review page is kept on its task for
`REVIEW_UNDO_SECONDS` before it is stored (its Review, the Decision, the client's event), so
that its reviewer can take it back (Backspace) without anything written having to be unwritten:
decisions and reviews never change once stored.

While an answer is pending its task stays claimed by the reviewer under a lease that outlasts
the window, out of everybody's queue, the reviewer's own included. `pending_answers_store`
stores the due ones (a job queued for the end of the window, and beat every few seconds in case
that job was lost); `answer_undo` takes the latest one back, keeps a `WithdrawnAnswer` and hands
the case back to its reviewer. A row lock orders the two: an answer is either withdrawn or
stored, never both.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from reviewplatform import lifecycle
from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.models import ReviewTask, WithdrawnAnswer

from . import answers
from .rules import answer_check

logger = logging.getLogger(__name__)

_STORE_BATCH = 100


@dataclass(frozen=True)
class Pending:
    """An answer waiting out its undo window."""

    task_id: int
    case_id: int
    answer: str
    given_at: datetime
    until: datetime


def _window() -> timedelta:
    return timedelta(seconds=settings.REVIEW_UNDO_SECONDS)


def answer_pend(*, task_id: int, lease_token: uuid.UUID, reviewer: User, answer: str,
                now: datetime) -> Pending | None:
    """Keep the reviewer's answer on its task until the undo window closes. None when it was
    the blind answer of blind-then-reveal: recorded at once, and the model's answer is shown
    next (the revised answer is the one held)."""
    facts = answers.answer_facts(task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    answer_check(answer, labels=facts.labels)
    task = facts.task
    if task.pending_until is not None:
        raise Conflict("your answer to this case is already given; undo it to change it")
    if answers.reveals_first(facts):
        answers.answer(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                       answer=answer, mode=None, now=now, blind_first=True)
        return None
    until = now + _window()
    held = ReviewTask.objects.filter(
        pk=task_id, status=ReviewTask.Status.CLAIMED, claimed_by=reviewer,
        lease_token=lease_token, blind_answer=task.blind_answer, pending_until__isnull=True,
    ).update(pending_answer=answer, pending_at=now, pending_until=until,
             lease_expires_at=Greatest(
                 F("lease_expires_at"),
                 until + timedelta(seconds=settings.REVIEW_LEASE_SECONDS)))
    if held != 1:
        raise Conflict("this case changed while your answer was given; please answer again")
    return Pending(task_id=task_id, case_id=task.case_id, answer=answer, given_at=now,
                   until=until)


def answers_pending(*, reviewer: User) -> list[Pending]:
    """The reviewer's answers not stored yet, latest first (the first one can be taken back
    while its window lasts)."""
    rows = (ReviewTask.objects
            .filter(claimed_by=reviewer, status=ReviewTask.Status.CLAIMED,
                    pending_until__isnull=False)
            .order_by("-pending_until")
            .values_list("pk", "case_id", "pending_answer", "pending_at", "pending_until"))
    return [Pending(task_id=pk, case_id=case_id, answer=answer, given_at=at or until,
                    until=until)
            for pk, case_id, answer, at, until in rows if until is not None]


def answer_undo(*, reviewer: User, now: datetime) -> Pending:
    """Take back the reviewer's latest pending answer: it is kept as a WithdrawnAnswer, and the
    case is the reviewer's again under a fresh lease, to be answered anew."""
    with transaction.atomic():
        task = (ReviewTask.objects.select_for_update()
                .filter(claimed_by=reviewer, status=ReviewTask.Status.CLAIMED,
                        pending_until__gt=now)
                .order_by("-pending_until").first())
        if task is None:
            raise Conflict(f"nothing to undo: an answer is stored {settings.REVIEW_UNDO_SECONDS}"
                           " seconds after it is given, and yours already was")
        assert task.pending_until is not None
        undone = Pending(task_id=task.pk, case_id=task.case_id, answer=task.pending_answer,
                         given_at=task.pending_at or now, until=task.pending_until)
        WithdrawnAnswer.objects.create(task=task, case_id=task.case_id, reviewer=reviewer,
                                       answer=undone.answer, answered_at=undone.given_at)
        task.pending_answer = ""
        task.pending_at = task.pending_until = None
        task.lease_expires_at = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
        task.save(update_fields=["pending_answer", "pending_at", "pending_until",
                                 "lease_expires_at"])
    return undone


def pending_answers_store(*, now: datetime, task_ids: list[int] | None = None) -> int:
    """Store every pending answer whose window has closed (only those of `task_ids` when
    given), as its reviewer gave it; returns how many were stored. A task locked by an undo
    under way is left for the next run."""
    stored = 0
    while True:
        with transaction.atomic():
            due = (ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
                   .select_related("claimed_by")
                   .filter(status=ReviewTask.Status.CLAIMED, pending_until__lte=now))
            if task_ids is not None:
                due = due.filter(pk__in=task_ids)
            batch = list(due.order_by("pending_until", "pk")[:_STORE_BATCH])
            for task in batch:
                stored += _store(task)
        if len(batch) < _STORE_BATCH:
            return stored


def _store(task: ReviewTask) -> int:
    assert task.pending_until is not None and task.lease_token is not None
    assert task.claimed_by is not None
    try:
        with transaction.atomic():
            answers.answer(task_id=task.pk, lease_token=task.lease_token,
                           reviewer=task.claimed_by, answer=task.pending_answer, mode=None,
                           now=task.pending_at or task.pending_until, blind_first=False)
    except ServiceError as error:
        # The answer no longer fits its task (its deployment's labels changed, say): the case
        # goes back to the queue rather than waiting on an answer that cannot be stored.
        logger.warning("pending answer on task %s not stored: %s", task.pk, error.message)
        lifecycle.review_task_hand_back(task)
        return 0
    return 1
