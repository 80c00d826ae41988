"""Answers: one read gives the task and all that checking the answer and the review chain
need; `lifecycle.answer_store` then stores it in one statement, only while the task is as it
was read (its holder, lease token and blind answer), without a lock held between the two."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth.models import User
from django.db import connection

from inference.models import Prediction
from reviewplatform import lifecycle
from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.models import Review, ReviewMode, ReviewTask

from . import chain
from .claims import TASK_ATTNAMES, TASK_COLUMNS, task_from_row
from .rules import answer_check, holder_check, review_mode_for

_ANSWER_READ_SQL = f"""
    SELECT {TASK_COLUMNS}, d.labels, d.review_mode, d.second_opinion_rate,
           pv.confidence_threshold, champion.label, champion.confidence, follows.answer
    FROM reviewplatform_reviewtask AS t
    JOIN reviewplatform_case AS c ON c.id = t.case_id
    JOIN reviewplatform_deployment AS d ON d.id = c.deployment_id
    JOIN rollout_policyversion AS pv ON pv.id = t.policy_version_id
    LEFT JOIN reviewplatform_review AS follows ON follows.id = t.follows_id
    LEFT JOIN LATERAL (
        SELECT p.label, p.confidence FROM inference_prediction AS p
        JOIN inference_modelversion AS mv ON mv.id = p.model_version_id
        WHERE p.case_id = t.case_id AND mv.is_champion AND p.status = %(ok)s LIMIT 1
    ) AS champion ON TRUE
    WHERE t.id = %(task)s"""  # noqa: S608

# Reads again when the task changed between the read and the write (its holder's own blind
# answer, say); a lease that passed to someone else is refused by the read.
_ANSWER_ATTEMPTS = 3


@dataclass(frozen=True)
class AnswerFacts:
    """A task as read for an answer, with what the answer and the review chain need."""

    task: ReviewTask
    labels: list[str]
    review_mode: str
    second_opinion_rate: float
    confidence_threshold: float
    champion: tuple[str, float | None] | None
    follows_answer: str | None


def answer_facts(*, task_id: int, lease_token: uuid.UUID, reviewer: User) -> AnswerFacts:
    with connection.cursor() as cursor:
        cursor.execute(_ANSWER_READ_SQL, {"task": task_id, "ok": Prediction.Status.OK})
        row = cursor.fetchone()
    task = None if row is None else task_from_row(row[:len(TASK_ATTNAMES)])
    holder_check(task, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    assert task is not None
    (labels, review_mode, second_opinion_rate, threshold, champion_label,
     champion_confidence, follows_answer) = row[len(TASK_ATTNAMES):]
    return AnswerFacts(
        task=task, labels=json.loads(labels) if isinstance(labels, str) else labels,
        review_mode=review_mode, second_opinion_rate=second_opinion_rate,
        confidence_threshold=threshold, follows_answer=follows_answer,
        champion=None if champion_label is None else (champion_label, champion_confidence))


def reveals_first(facts: AnswerFacts) -> bool:
    """Blind-then-reveal: the task's next answer is the blind one, recorded before the model's
    answer is shown."""
    mode = review_mode_for(facts.task, deployment_mode=facts.review_mode)
    return mode == ReviewMode.REVEALED and not facts.task.blind_answer


def answer(*, task_id: int, lease_token: uuid.UUID, reviewer: User, answer: str,
           mode: str | None, now: datetime, blind_first: bool) -> Review | None:
    """Store a reviewer's answer (`review_submit`; `pending` for the review page's answers,
    `blind_first` recording a blind-then-reveal task's first answer on its own)."""
    for _ in range(_ANSWER_ATTEMPTS):
        stored, review = _answer_once(task_id=task_id, lease_token=lease_token,
                                      reviewer=reviewer, answer=answer, mode=mode, now=now,
                                      blind_first=blind_first)
        if stored:
            return review
    raise Conflict("this case changed while your answer was stored; please answer again")


def _answer_once(*, task_id: int, lease_token: uuid.UUID, reviewer: User, answer: str,
                 mode: str | None, now: datetime, blind_first: bool
                 ) -> tuple[bool, Review | None]:
    """(False, None) when the task changed between the read and the write: nothing written."""
    facts = answer_facts(task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    task = facts.task
    answer_check(answer, labels=facts.labels)
    reveal_first = False
    if mode is None:
        mode = review_mode_for(task, deployment_mode=facts.review_mode)
        reveal_first = blind_first and reveals_first(facts)
        if task.blind_answer:
            mode = Review.Mode.REVEALED
    if mode not in Review.Mode.values:
        raise ServiceError(f"unknown review mode {mode!r}", field="mode")
    seconds = max(0.0, (now - (task.claimed_at or now)).total_seconds())

    def given(*, decides: bool) -> lifecycle.Answer:
        return lifecycle.Answer(
            task_id=task_id, case_id=task.case_id, reviewer_id=reviewer.pk,
            lease_token=lease_token, read_blind_answer=task.blind_answer, answer=answer,
            mode=str(mode), seconds=seconds, policy_version_id=task.policy_version_id,
            rule=task.rule, decides=decides)

    if reveal_first:
        return lifecycle.blind_answer_store(given(decides=False)), None
    follow_up = chain.follow_up_reason(
        task=task, answer=answer, labels=facts.labels,
        second_opinion_rate=facts.second_opinion_rate, threshold=facts.confidence_threshold,
        champion=lambda: facts.champion,
        first_answer=lambda: facts.follows_answer or chain.first_answer(task))
    stored = lifecycle.answer_store(
        given(decides=follow_up is None and task.reason != ReviewTask.Reason.GOLD), now=now,
        follow_up=None if follow_up is None else lifecycle.FollowUp(reason=follow_up,
                                                                    urgent=task.urgent))
    if stored is None:
        return False, None
    review_id, created_at = stored
    review = Review(pk=review_id, task=task, case_id=task.case_id, reviewer=reviewer,
                    answer=answer, mode=mode, blind_answer=task.blind_answer, seconds=seconds,
                    created_at=created_at)
    review._state.adding = False
    review._state.db = connection.alias
    task.status = ReviewTask.Status.DONE
    task.completed_at = now
    task.lease_expires_at = None
    return True, review
