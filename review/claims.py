"""Claims: the next task for a reviewer, in one statement, under a fresh lease.

Serving order: urgent tasks first (the champion predicted one of the deployment's urgent
labels), then overdue audits, oldest first (an audit task waiting longer than
`AUDIT_SERVE_WITHIN_SECONDS`: the guardrail's evidence must not go stale behind the backlog),
then by the reason's priority (`REVIEW_REASON_PRIORITY`), then by a manual boost (`priority`),
then oldest first. A reviewer never gets a case they already answered.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, QuerySet

from inference.models import Prediction
from reviewplatform import lifecycle
from reviewplatform.models import Deployment, GoldCase, Review, ReviewTask

from .rules import ESCALATION_PERM

SERVING_ORDER = (F("urgent").desc(), F("reason_rank").desc(nulls_last=True),
                 F("priority").desc(), "created_at", "id")


def queue_for(reviewer: User) -> QuerySet[ReviewTask]:
    """Tasks this reviewer may take: not a case they answered; escalations only for seniors;
    never a gold task (those are drawn, not queued). The claim statement says the same."""
    tasks = ReviewTask.objects.filter(
        ~Exists(Review.objects.filter(case_id=OuterRef("case_id"), reviewer=reviewer)))
    if not reviewer.has_perm(ESCALATION_PERM):
        tasks = tasks.exclude(reason=ReviewTask.Reason.ESCALATION)
    return tasks.exclude(reason=ReviewTask.Reason.GOLD)

# One statement, a transaction of its own, finds the task (held, else the next in
# serving order) and leases it. The statements below are put together from constant fragments
# only (S608); every value is a query parameter.

TASK_COLUMNS = ", ".join(f"t.{field.column}" for field in ReviewTask._meta.concrete_fields)
TASK_ATTNAMES = [field.attname for field in ReviewTask._meta.concrete_fields]
_SERVING_ORDER_SQL = "urgent DESC, reason_rank DESC NULLS LAST, priority DESC, created_at, id"
# An audit waiting past its deadline (not an urgent one: those are served first anyway).
_OVERDUE_SQL = "(NOT t.urgent AND t.reason = 'audit' AND t.created_at < %(audit_due)s)"


def _order_sql(overdue: str) -> str:
    """Serving order with overdue audits (`overdue`: a boolean expression) after urgent tasks
    and before the rest, oldest first among themselves."""
    return (f"urgent DESC, {overdue} DESC, CASE WHEN {overdue} THEN created_at END,"
            f" {_SERVING_ORDER_SQL.removeprefix('urgent DESC, ')}")

# A task whose answer waits out its undo window (`pending`) is nobody's to take, not even its
# holder's: the answer is stored, or taken back, by `pending`.
_HELD_SQL = ("t.status = 'claimed' AND t.claimed_by_id = %(reviewer)s"
             " AND t.lease_expires_at >= %(now)s AND t.pending_until IS NULL")


def _candidate_sql(*, exclude_skipped: bool) -> str:
    """The first task in serving order this reviewer may take: the first open one in the
    reason's order, the oldest overdue open audit and the first one with an expired lease,
    each looked up down its own partial index (the best of the three wins)."""
    may_take = ("t.reason <> 'gold' AND (%(senior)s OR t.reason <> 'escalation')"
                " AND NOT EXISTS (SELECT 1 FROM reviewplatform_review AS r"
                " WHERE r.case_id = t.case_id AND r.reviewer_id = %(reviewer)s)")
    if exclude_skipped:
        may_take += " AND NOT (t.id = ANY(%(skipped)s::bigint[]))"
    columns = f"t.id, t.urgent, t.reason_rank, t.priority, t.created_at, {_OVERDUE_SQL} AS overdue"
    return f"""
        SELECT id FROM (
            SELECT * FROM (
                SELECT {columns} FROM reviewplatform_reviewtask AS t
                WHERE t.status = 'open' AND {may_take}
                ORDER BY {_SERVING_ORDER_SQL} LIMIT 1 FOR UPDATE SKIP LOCKED) AS open_task
            UNION ALL
            SELECT * FROM (
                SELECT {columns} FROM reviewplatform_reviewtask AS t
                WHERE t.status = 'open' AND t.reason = 'audit' AND {_OVERDUE_SQL} AND {may_take}
                ORDER BY t.created_at, t.id LIMIT 1 FOR UPDATE SKIP LOCKED) AS overdue_audit
            UNION ALL
            SELECT * FROM (
                SELECT {columns} FROM reviewplatform_reviewtask AS t
                WHERE t.status = 'claimed' AND t.lease_expires_at < %(now)s
                  AND t.pending_until IS NULL AND {may_take}
                ORDER BY {_order_sql(_OVERDUE_SQL)} LIMIT 1 FOR UPDATE SKIP LOCKED
            ) AS expired_task
        ) AS candidate ORDER BY {_order_sql("overdue")} LIMIT 1"""  # noqa: S608


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
            RETURNING {TASK_COLUMNS}
        )
        SELECT unranked.waiting, pick.id, leased.*
        FROM unranked, pick LEFT JOIN leased ON TRUE"""  # noqa: S608


def claim_next(*, reviewer: User, skipped: list[int], now: datetime, lease: timedelta,
               audit_within: timedelta, rng: Callable[[], float]) -> ReviewTask | None:
    """The held task, else the next one in serving order, leased to the reviewer (or a gold
    case instead, at the deployment's gold rate). An audit created more than `audit_within`
    before `now` is overdue. Two claims at once never take the same task, nor wait for each
    other (`FOR UPDATE SKIP LOCKED`)."""
    params: dict[str, Any] = {
        "reviewer": reviewer.pk, "senior": reviewer.has_perm(ESCALATION_PERM),
        "skipped": skipped, "now": now, "until": now + lease, "token": uuid.uuid4(),
        "audit_due": now - audit_within, "rank_first": True}
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
            return _lease_new(candidate, reviewer=reviewer, now=now, lease=lease, rng=rng)


def task_from_row(row: list[Any] | tuple[Any, ...]) -> ReviewTask:
    return ReviewTask.from_db(connection.alias, TASK_ATTNAMES, row)


def champion_labels(case_ids: Iterable[int]) -> dict[int, str]:
    """The champion's label for each case that has one, by case id."""
    return dict(Prediction.objects.champion().filter(case_id__in=list(case_ids))
                .values_list("case_id", "label"))


def review_tasks_rank(*, limit: int = 500) -> int:
    """Rank tasks written without a rank (urgency and reason priority): rows put straight
    into the table by a bulk load or an older release.

    Runs before a claim when unranked tasks wait; with nothing to rank it is one probe of a
    partial index. Rows another claim is ranking are skipped, so claims never wait here.
    """
    unranked = ReviewTask.objects.filter(reason_rank__isnull=True)
    if not unranked.exists():
        return 0
    with transaction.atomic():
        tasks = list(unranked.select_for_update(skip_locked=True, of=("self",))
                     .select_related("case__deployment").order_by("id")[:limit])
        labels = champion_labels(task.case_id for task in tasks)
        for task in tasks:
            task.urgent = lifecycle.is_urgent(labels.get(task.case_id),
                                              task.case.deployment.urgent_labels)
            task.reason_rank = lifecycle.reason_priority(task.reason)
        ReviewTask.objects.bulk_update(tasks, ["urgent", "reason_rank"])
    return len(tasks)


def _gold_drawn(*, reviewer: User, deployment: Deployment, rng: Callable[[], float]
                ) -> GoldCase | None:
    """At the deployment's gold rate, a gold case the reviewer has not answered."""
    if deployment.gold_rate <= 0 or rng() >= deployment.gold_rate:
        return None
    return (GoldCase.objects.filter(is_active=True, case__deployment=deployment,
                                    is_example=False)  # the guidelines show the examples
            .exclude(Exists(Review.objects.filter(case_id=OuterRef("case_id"),
                                                  reviewer=reviewer)))
            .order_by("?").first())


def _lease_new(candidate: ReviewTask, *, reviewer: User, now: datetime, lease: timedelta,
               rng: Callable[[], float]) -> ReviewTask:
    """Lease the candidate (locked by the caller) to the reviewer, or a gold case instead."""
    held = lifecycle.Lease(reviewer_id=reviewer.pk, token=uuid.uuid4(), claimed_at=now,
                           expires_at=now + lease)
    gold = _gold_drawn(reviewer=reviewer, deployment=candidate.case.deployment, rng=rng)
    if gold is not None:
        return lifecycle.review_task_open(case_id=gold.case_id, reason=ReviewTask.Reason.GOLD,
                                          policy_version_id=candidate.policy_version_id,
                                          lease=held)
    candidate.status = ReviewTask.Status.CLAIMED
    candidate.claimed_by = reviewer  # type: ignore[assignment]
    candidate.claimed_at = held.claimed_at
    candidate.lease_token = held.token
    candidate.lease_expires_at = held.expires_at
    candidate.blind_answer = ""
    candidate.save(update_fields=["status", "claimed_by", "claimed_at", "lease_token",
                                  "lease_expires_at", "blind_answer"])
    return candidate
