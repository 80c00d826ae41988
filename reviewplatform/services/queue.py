"""The review queue: tasks, claims under a lease, answers, and the review chain of a case.

Serving order: urgent tasks first (the champion predicted one of the deployment's urgent
labels), then by the reason's priority (`REVIEW_REASON_PRIORITY`), then by a manual boost
(`priority`), then oldest first. A reviewer never gets a case they already answered.

The final decision of a case (docs/review.md):
- a first review decides the case, unless it needs a second opinion: the case is in the
  deployment's sampled share (`second_opinion_rate`), or the reviewer gave a label that differs
  from a confident champion (confidence at or above the policy version's threshold);
- a second opinion (blind, by someone else) that agrees decides the case; one that disagrees
  escalates it to a senior reviewer (blind), whose answer decides;
- a case that already has a Decision (the model's, for an audit) keeps it: the chain then only
  measures. Gold tasks never touch the chain.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet
from django.utils import timezone

from ..errors import Conflict, NotFound, ServiceError
from ..models import Case, Decision, Deployment, GoldCase, Review, ReviewMode, ReviewTask

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
        return _claim_next_postgresql(reviewer=reviewer, skipped=list(skipped), now=now,
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
        return _lease_new(task, reviewer=reviewer, now=now, lease=lease, rng=rng)


def _lease_new(candidate: ReviewTask, *, reviewer: User, now: datetime, lease: timedelta,
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


def _claim_next_postgresql(*, reviewer: User, skipped: list[int], now: datetime,
                           lease: timedelta, rng: Callable[[], float]) -> ReviewTask | None:
    params: dict[str, Any] = {
        "reviewer": reviewer.pk, "senior": reviewer.has_perm(ESCALATION_PERM),
        "skipped": skipped, "now": now, "until": now + lease, "token": uuid.uuid4(),
        "rank_first": True}
    sql = _claim_sql(skipped=bool(skipped))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        unranked, picked, *leased = cursor.fetchone()
        if unranked:
            review_tasks_rank()
            params["rank_first"] = False
            cursor.execute(sql, params)
            unranked, picked, *leased = cursor.fetchone()
        if picked is None or leased[0] is not None:
            return None if picked is None else _task_from_row(leased)
        # The deployment serves gold cases: claim again, holding the candidate's lock (FOR
        # UPDATE) until this transaction ends while a gold case is drawn.
        params["rank_first"] = False
        with transaction.atomic():
            cursor.execute(sql, params)
            unranked, picked, *leased = cursor.fetchone()
            if picked is None or leased[0] is not None:
                return None if picked is None else _task_from_row(leased)
            candidate = ReviewTask.objects.select_related("case__deployment").get(pk=picked)
            return _lease_new(candidate, reviewer=reviewer, now=now, lease=lease, rng=rng)


def _task_from_row(row: list[Any] | tuple[Any, ...]) -> ReviewTask:
    return ReviewTask.from_db(connection.alias, _TASK_ATTNAMES, row)


def _task_for_holder(*, task_id: int, lease_token: uuid.UUID, reviewer: User,
                     related: tuple[str, ...] = ()) -> ReviewTask:
    """Lock the task and check that the reviewer still holds its lease (the fencing token).

    A lease that ran out but that nobody else took is still the reviewer's.
    """
    task = (ReviewTask.objects.select_for_update(of=("self",)).select_related(*related)
            .filter(id=task_id).first())
    _holder_check(task, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    assert task is not None
    return task


def _holder_check(task: ReviewTask | None, *, task_id: int, lease_token: uuid.UUID,
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
    return _review_mode(task, deployment_mode=task.case.deployment.review_mode)


def _review_mode(task: ReviewTask, *, deployment_mode: str) -> str:
    if task_shown_reason(task) in ALWAYS_BLIND:
        return ReviewMode.BLIND
    return deployment_mode


def _answer_check(answer: str, *, labels: list[str]) -> None:
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
        return _answer_postgresql(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                                  answer=answer, mode=None, now=now or timezone.now(),
                                  blind_first=True)
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                                related=("case__deployment",))
        _answer_check(answer, labels=task.case.deployment.labels)
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
        review = _answer_postgresql(task_id=task_id, lease_token=lease_token,
                                    reviewer=reviewer, answer=answer, mode=mode, now=now,
                                    blind_first=False)
        assert review is not None
        return review
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer,
                                related=("case__deployment", "policy_version", "follows"))
        deployment = task.case.deployment
        _answer_check(answer, labels=deployment.labels)
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

        follow_up = _follow_up_reason(
            task=task, answer=answer, labels=deployment.labels,
            second_opinion_rate=deployment.second_opinion_rate,
            threshold=task.policy_version.confidence_threshold, champion=champion,
            first_answer=lambda: _first_answer(task))
        if follow_up is not None:
            _follow_up_create(task=task, reason=follow_up, review=review)
        elif (task.reason != ReviewTask.Reason.GOLD
              and not Decision.objects.filter(case_id=task.case_id).exists()):
            Decision.objects.create(case=task.case, label=review.answer,
                                    source=Decision.Source.HUMAN,
                                    policy_version=task.policy_version, rule=task.rule,
                                    review=review)
            Case.objects.filter(pk=task.case_id).update(status=Case.Status.DECIDED,
                                                        updated_at=now)
    return review


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
    task = None if row is None else _task_from_row(row[:len(_TASK_ATTNAMES)])
    _holder_check(task, task_id=task_id, lease_token=lease_token, reviewer=reviewer)
    assert task is not None
    (labels, review_mode, second_opinion_rate, threshold, champion_label,
     champion_confidence, follows_answer) = row[len(_TASK_ATTNAMES):]
    return _AnswerFacts(
        task=task, labels=json.loads(labels) if isinstance(labels, str) else labels,
        review_mode=review_mode, second_opinion_rate=second_opinion_rate,
        confidence_threshold=threshold, follows_answer=follows_answer,
        champion=None if champion_label is None else (champion_label, champion_confidence))


def _answer_postgresql(*, task_id: int, lease_token: uuid.UUID, reviewer: User, answer: str,
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
    _answer_check(answer, labels=facts.labels)
    as_read = {"task": task_id, "reviewer": reviewer.pk, "token": lease_token,
               "read_blind_answer": task.blind_answer}
    if mode is None:
        mode = _review_mode(task, deployment_mode=facts.review_mode)
        if blind_first and mode == ReviewMode.REVEALED and not task.blind_answer:
            cursor.execute(_BLIND_ANSWER_SQL, {**as_read, "answer": answer})
            return cursor.rowcount == 1, None
        if task.blind_answer:
            mode = Review.Mode.REVEALED
    if mode not in Review.Mode.values:
        raise ServiceError(f"unknown review mode {mode!r}", field="mode")
    follow_up = _follow_up_reason(
        task=task, answer=answer, labels=facts.labels,
        second_opinion_rate=facts.second_opinion_rate, threshold=facts.confidence_threshold,
        champion=lambda: facts.champion,
        first_answer=lambda: facts.follows_answer or _first_answer(task))
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
            _follow_up_create(task=task, reason=follow_up, review=review)
    return True, review


def _sampled_for_second_opinion(case_id: int, rate: float) -> bool:
    """A stable draw per case: the same case is always in or out of the sampled share."""
    if rate <= 0:
        return False
    digest = hashlib.sha256(f"second-opinion:{case_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < rate


def _first_answer(task: ReviewTask) -> str | None:
    """The answer a follow-up checks: its `follows`, else the case's first chain review."""
    if task.follows is not None:
        return task.follows.answer
    first = (Review.objects.filter(case_id=task.case_id)
             .exclude(task__reason__in=[ReviewTask.Reason.GOLD, ReviewTask.Reason.SECOND_OPINION,
                                        ReviewTask.Reason.ESCALATION])
             .exclude(task=task).order_by("created_at", "id").first())
    return None if first is None else first.answer


def _follow_up_reason(
    *,
    task: ReviewTask,
    answer: str,
    labels: list[str],
    second_opinion_rate: float,
    threshold: float,
    champion: Callable[[], tuple[str, float | None] | None],
    first_answer: Callable[[], str | None],
) -> str | None:
    """The review the chain needs next (module docstring), or None when this answer concludes
    it. `champion` (label, confidence) and `first_answer` are looked up only when needed."""
    reason = task.reason
    if reason in (ReviewTask.Reason.GOLD, ReviewTask.Reason.ESCALATION):
        return None
    if reason == ReviewTask.Reason.SECOND_OPINION:
        first = first_answer()
        return ReviewTask.Reason.ESCALATION if first is not None and first != answer else None
    if _sampled_for_second_opinion(task.case_id, second_opinion_rate):
        return ReviewTask.Reason.SECOND_OPINION
    if answer not in labels:
        return None  # "cannot tell" and "out of domain" are no competing label
    predicted = champion()
    if (predicted is not None and predicted[1] is not None and predicted[1] >= threshold
            and predicted[0] != answer):
        return ReviewTask.Reason.SECOND_OPINION
    return None


def _follow_up_create(*, task: ReviewTask, reason: str, review: Review) -> None:
    """Queue the second opinion or escalation: it keeps the case's urgency."""
    ReviewTask.objects.create(case_id=task.case_id, reason=reason,
                              policy_version_id=task.policy_version_id, rule=task.rule,
                              follows=review, urgent=task.urgent,
                              reason_rank=reason_priority(reason))
    logger.info("case %s: %s after review %s", task.case_id, reason, review.pk)
