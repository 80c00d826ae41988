"""The review queue's PostgreSQL statements: a claim in one statement, an answer in two.

`queue.review_claim_next`, `review_answer` and `review_submit` call these on PostgreSQL; other
databases take the ORM path in `queue`, which means the same.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone

from ..errors import Conflict, ServiceError
from ..models import Review, ReviewMode, ReviewTask
from . import queue, review_chain

# PostgreSQL: one statement, a transaction of its own, finds the task (held, else the next in
# serving order) and leases it. The statements below are put together from constant fragments
# only (S608); every value is a query parameter.

_TASK_COLUMNS = ", ".join(f"t.{field.column}" for field in ReviewTask._meta.concrete_fields)
_TASK_ATTNAMES = [field.attname for field in ReviewTask._meta.concrete_fields]
_SERVING_ORDER_SQL = "urgent DESC, reason_rank DESC NULLS LAST, priority DESC, created_at, id"
_HELD_SQL = ("t.status = 'claimed' AND t.claimed_by_id = %(reviewer)s"
             " AND t.lease_expires_at >= %(now)s")


def _candidate_sql(*, exclude_skipped: bool) -> str:
    """The first task in serving order this reviewer may take, open or with an expired lease,
    each looked up down its own partial index (the better of the two wins)."""
    may_take = ("t.reason <> 'gold' AND (%(senior)s OR t.reason <> 'escalation')"
                " AND NOT EXISTS (SELECT 1 FROM reviewplatform_review AS r"
                " WHERE r.case_id = t.case_id AND r.reviewer_id = %(reviewer)s)")
    if exclude_skipped:
        may_take += " AND NOT (t.id = ANY(%(skipped)s::bigint[]))"
    columns = "t.id, t.urgent, t.reason_rank, t.priority, t.created_at"
    return f"""
        SELECT id FROM (
            SELECT * FROM (
                SELECT {columns} FROM reviewplatform_reviewtask AS t
                WHERE t.status = 'open' AND {may_take}
                ORDER BY {_SERVING_ORDER_SQL} LIMIT 1 FOR UPDATE SKIP LOCKED) AS open_task
            UNION ALL
            SELECT * FROM (
                SELECT {columns} FROM reviewplatform_reviewtask AS t
                WHERE t.status = 'claimed' AND t.lease_expires_at < %(now)s AND {may_take}
                ORDER BY {_SERVING_ORDER_SQL} LIMIT 1 FOR UPDATE SKIP LOCKED) AS expired_task
        ) AS candidate ORDER BY {_SERVING_ORDER_SQL} LIMIT 1"""  # noqa: S608


@functools.cache
def _claim_sql(*, skipped: bool) -> str:
    """Columns: whether unranked tasks wait (`rank_first`: then nothing is picked), the picked
    task's id, then the leased task's columns.

    Picks the held task, else the next one (skipped tasks last), and leases it: a held task
    keeps its token and blind answer. A candidate whose deployment serves gold cases is picked
    but not leased: the gold draw happens in Python.
    """
    picks = [f"SELECT t.id FROM reviewplatform_reviewtask AS t WHERE {_HELD_SQL}"  # noqa: S608
             " ORDER BY t.claimed_at LIMIT 1 FOR UPDATE"]
    if skipped:
        picks.append(_candidate_sql(exclude_skipped=True))
    picks.append(_candidate_sql(exclude_skipped=False))
    return f"""
        WITH unranked AS (
            SELECT %(rank_first)s AND EXISTS (
                SELECT 1 FROM reviewplatform_reviewtask WHERE reason_rank IS NULL) AS waiting
        ), pick AS (
            SELECT CASE WHEN (SELECT waiting FROM unranked) THEN NULL
                        ELSE COALESCE({", ".join(f"({sql})" for sql in picks)}) END AS id
        ), leased AS (
            UPDATE reviewplatform_reviewtask AS t
            SET status = 'claimed', claimed_by_id = %(reviewer)s, lease_expires_at = %(until)s,
                claimed_at = CASE WHEN {_HELD_SQL} THEN t.claimed_at ELSE %(now)s END,
                lease_token = CASE WHEN {_HELD_SQL} THEN t.lease_token ELSE %(token)s END,
                blind_answer = CASE WHEN {_HELD_SQL} THEN t.blind_answer ELSE '' END
            FROM pick
            WHERE t.id = pick.id AND ({_HELD_SQL} OR NOT EXISTS (
                SELECT 1 FROM reviewplatform_case AS c
                JOIN reviewplatform_deployment AS d ON d.id = c.deployment_id
                WHERE c.id = t.case_id AND d.gold_rate > 0))
            RETURNING {_TASK_COLUMNS}
        )
        SELECT unranked.waiting, pick.id, leased.*
        FROM unranked, pick LEFT JOIN leased ON TRUE"""  # noqa: S608


def claim_next(*, reviewer: User, skipped: list[int], now: datetime,
                           lease: timedelta, rng: Callable[[], float]) -> ReviewTask | None:
    params: dict[str, Any] = {
        "reviewer": reviewer.pk, "senior": reviewer.has_perm(queue.ESCALATION_PERM),
        "skipped": skipped, "now": now, "until": now + lease, "token": uuid.uuid4(),
        "rank_first": True}
    sql = _claim_sql(skipped=bool(skipped))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        unranked, picked, *leased = cursor.fetchone()
        if unranked:
            queue.review_tasks_rank()
            params["rank_first"] = False
            cursor.execute(sql, params)
            unranked, picked, *leased = cursor.fetchone()
        if picked is None or leased[0] is not None:
            return None if picked is None else task_from_row(leased)
        # The deployment serves gold cases: claim again, holding the candidate's lock (FOR
        # UPDATE) until this transaction ends while a gold case is drawn.
        params["rank_first"] = False
        with transaction.atomic():
            cursor.execute(sql, params)
            unranked, picked, *leased = cursor.fetchone()
            if picked is None or leased[0] is not None:
                return None if picked is None else task_from_row(leased)
            candidate = ReviewTask.objects.select_related("case__deployment").get(pk=picked)
            return queue.lease_new(candidate, reviewer=reviewer, now=now, lease=lease, rng=rng)


def task_from_row(row: list[Any] | tuple[Any, ...]) -> ReviewTask:
    return ReviewTask.from_db(connection.alias, _TASK_ATTNAMES, row)


# PostgreSQL: one read gives the task and all that checking the answer and the review chain
# need; one statement then stores the answer, only while the task is as it was read (the
# reviewer's, the same lease token and blind answer): the fencing check, without a lock held
# between the two.

_ANSWER_READ_SQL = f"""
    SELECT {_TASK_COLUMNS}, d.labels, d.review_mode, d.second_opinion_rate,
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

_AS_READ_SQL = ("id = %(task)s AND status = 'claimed' AND claimed_by_id = %(reviewer)s"
                " AND lease_token = %(token)s AND blind_answer = %(read_blind_answer)s")

_BLIND_ANSWER_SQL = f"""
    UPDATE reviewplatform_reviewtask SET blind_answer = %(answer)s
    WHERE {_AS_READ_SQL}"""  # noqa: S608

# The Decision only when the chain concludes and the case has none yet (an audited model
# decision stands); the case is marked decided only when this Decision was written.
_ANSWER_WRITE_SQL = f"""
    WITH done AS (
        UPDATE reviewplatform_reviewtask
        SET status = 'done', completed_at = %(now)s, lease_expires_at = NULL
        WHERE {_AS_READ_SQL}
        RETURNING id
    ), review AS (
        INSERT INTO reviewplatform_review (task_id, case_id, reviewer_id, answer, mode,
                                           blind_answer, seconds, created_at)
        SELECT done.id, %(case)s, %(reviewer)s, %(answer)s, %(mode)s, %(read_blind_answer)s,
               %(seconds)s, %(created_at)s
        FROM done
        RETURNING id
    ), decision AS (
        INSERT INTO reviewplatform_decision (case_id, label, source, policy_version_id, rule,
                                             review_id, decided_at)
        SELECT %(case)s, %(answer)s, 'human', %(policy_version)s, %(rule)s, review.id,
               %(created_at)s
        FROM review WHERE %(decides)s
        ON CONFLICT (case_id) DO NOTHING
        RETURNING case_id
    ), decided AS (
        UPDATE reviewplatform_case SET status = 'decided', updated_at = %(now)s
        WHERE id IN (SELECT case_id FROM decision)
    )
    SELECT id FROM review"""  # noqa: S608

# Reads again when the task changed between the read and the write (its holder's own blind
# answer, say); a lease that passed to someone else is refused by the read.
_ANSWER_ATTEMPTS = 3


@dataclass(frozen=True)
class _AnswerFacts:
    """A task as read for an answer, with what the answer and the review chain need."""

    task: ReviewTask
    labels: list[str]
    review_mode: str
    second_opinion_rate: float
    confidence_threshold: float
    champion: tuple[str, float | None] | None
    follows_answer: str | None


def _answer_facts(cursor: Any, *, task_id: int, lease_token: uuid.UUID, reviewer: User
                  ) -> _AnswerFacts:
    from inference.models import Prediction

    cursor.execute(_ANSWER_READ_SQL, {"task": task_id, "ok": Prediction.Status.OK})
    row = cursor.fetchone()
    task = None if row is None else task_from_row(row[:len(_TASK_ATTNAMES)])
    queue.holder_check(task, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    assert task is not None
    (labels, review_mode, second_opinion_rate, threshold, champion_label,
     champion_confidence, follows_answer) = row[len(_TASK_ATTNAMES):]
    return _AnswerFacts(
        task=task, labels=json.loads(labels) if isinstance(labels, str) else labels,
        review_mode=review_mode, second_opinion_rate=second_opinion_rate,
        confidence_threshold=threshold, follows_answer=follows_answer,
        champion=None if champion_label is None else (champion_label, champion_confidence))


def answer(*, task_id: int, lease_token: uuid.UUID, reviewer: User, answer: str,
                       mode: str | None, now: datetime, blind_first: bool) -> Review | None:
    """`review_submit` (and with `blind_first`, `review_answer`) on PostgreSQL."""
    with connection.cursor() as cursor:
        for _ in range(_ANSWER_ATTEMPTS):
            stored, review = _answer_once(cursor, task_id=task_id, lease_token=lease_token,
                                          reviewer=reviewer, answer=answer, mode=mode, now=now,
                                          blind_first=blind_first)
            if stored:
                return review
    raise Conflict("this case changed while your answer was stored; please answer again")


def _answer_once(cursor: Any, *, task_id: int, lease_token: uuid.UUID, reviewer: User,
                 answer: str, mode: str | None, now: datetime, blind_first: bool
                 ) -> tuple[bool, Review | None]:
    """(False, None) when the task changed between the read and the write: nothing written."""
    facts = _answer_facts(cursor, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    task = facts.task
    queue.answer_check(answer, labels=facts.labels)
    as_read = {"task": task_id, "reviewer": reviewer.pk, "token": lease_token,
               "read_blind_answer": task.blind_answer}
    if mode is None:
        mode = queue.review_mode_for(task, deployment_mode=facts.review_mode)
        if blind_first and mode == ReviewMode.REVEALED and not task.blind_answer:
            cursor.execute(_BLIND_ANSWER_SQL, {**as_read, "answer": answer})
            return cursor.rowcount == 1, None
        if task.blind_answer:
            mode = Review.Mode.REVEALED
    if mode not in Review.Mode.values:
        raise ServiceError(f"unknown review mode {mode!r}", field="mode")
    follow_up = review_chain.follow_up_reason(
        task=task, answer=answer, labels=facts.labels,
        second_opinion_rate=facts.second_opinion_rate, threshold=facts.confidence_threshold,
        champion=lambda: facts.champion,
        first_answer=lambda: facts.follows_answer or review_chain.first_answer(task))
    review = Review(task=task, case_id=task.case_id, reviewer=reviewer, answer=answer,
                    mode=mode, blind_answer=task.blind_answer, created_at=timezone.now(),
                    seconds=max(0.0, (now - (task.claimed_at or now)).total_seconds()))
    # A follow-up task is written in the same transaction as the answer it follows.
    with transaction.atomic() if follow_up is not None else contextlib.nullcontext():
        cursor.execute(_ANSWER_WRITE_SQL, {
            **as_read, "case": task.case_id, "answer": answer, "mode": mode,
            "seconds": review.seconds, "created_at": review.created_at, "now": now,
            "decides": follow_up is None and task.reason != ReviewTask.Reason.GOLD,
            "policy_version": task.policy_version_id, "rule": task.rule})
        stored = cursor.fetchone()
        if stored is None:
            return False, None
        (review.pk,) = stored
        review._state.adding = False
        review._state.db = connection.alias
        task.status = ReviewTask.Status.DONE
        task.completed_at = now
        task.lease_expires_at = None
        if follow_up is not None:
            queue.follow_up_create(task=task, reason=follow_up, review=review)
    return True, review
