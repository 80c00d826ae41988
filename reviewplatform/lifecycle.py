"""The case lifecycle: the one module that writes a case's status, its Decision and new review
tasks, and the outbox event (`CaseEvent`) that tells the case's client of each change, in the
same transaction as the change.

Every app that moves a case on calls these functions with plain values: routing hands over its
routes (`cases_route`), the review queue its answers (`answer_store`) and follow-ups
(`review_task_open`), gold claims their tasks. Nothing else writes `Case.status`, a `Decision`,
a new `ReviewTask` or a `CaseEvent`: a case routed to humans gets `case.queued`, a decided
case `case.decided`.

States: `received` (waiting for predictions) → `in_review` (a review task is open) or
`decided` (the model's decision stands) → `decided` (a reviewer's answer concluded the review
chain). A case has at most one Decision (a database constraint); an audit or a second opinion
of a decided case only measures.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .errors import ServiceError
from .instants import instant_text
from .models import Case, CaseEvent, Decision, ReviewTask

logger = logging.getLogger(__name__)

Reason = ReviewTask.Reason

REASON_PRIORITY_DEFAULT: dict[str, int] = {
    # A case whose review chain has started waits for its conclusion: finish those first.
    Reason.ESCALATION: 60,
    Reason.SECOND_OPINION: 50,
    # Signals of domain shift or a broken model: look early.
    Reason.OUT_OF_DOMAIN: 40,
    Reason.MODEL_FAILED: 35,
    Reason.ROUTING_FAILED: 35,
    Reason.LOW_CONFIDENCE: 30,
    Reason.OUT_OF_SCOPE: 20,
    Reason.PAUSED: 20,
    Reason.SHADOW: 20,
    # The model's decision already stands.
    Reason.AUDIT: 10,
    Reason.GOLD: 0,
}


def reason_priority(reason: str) -> int:
    """The configured priority of a reason (settings.REVIEW_REASON_PRIORITY over the defaults)."""
    table = {**REASON_PRIORITY_DEFAULT, **getattr(settings, "REVIEW_REASON_PRIORITY", {})}
    return int(table.get(reason, 0))


def is_urgent(champion_label: str | None, urgent_labels: Iterable[str]) -> bool:
    """A case is urgent when the champion predicted one of the deployment's urgent labels."""
    return champion_label is not None and champion_label in urgent_labels


@dataclass(frozen=True, slots=True)
class CaseRoute:
    """Routing's outcome for one received case, as plain values.

    `model_label` set: the model's decision stands (with `prediction_id`); `review_reason`
    set as well: an audit task is queued beside it. `model_label` None: humans decide, for
    `review_reason`."""

    case_id: int
    policy_version_id: int
    review_reason: str | None
    rule: str = ""
    model_label: str | None = None
    prediction_id: int | None = None
    urgent: bool = False
    audit_rate: float | None = None  # an audit's sampling rate

    def __post_init__(self) -> None:
        if self.model_label is None and not self.review_reason:
            raise ValueError(f"case {self.case_id}: a route to humans needs a review reason")
        if self.review_reason and self.review_reason not in Reason.values:
            raise ValueError(f"unknown review reason {self.review_reason!r}")


Router = Callable[[list[Case]], list[CaseRoute]]


def cases_route(*, case_ids: Sequence[int], router: Router) -> list[int]:
    """Route the cases still `received`: lock them, ask `router` for their routes, write them.

    One short transaction for the whole batch. Idempotent by state: a case already routed is
    not handed to the router again. A case the router leaves out stays `received`. Returns the
    ids of the cases routed.
    """
    now = timezone.now()
    with transaction.atomic():
        cases = list(Case.objects.select_for_update(of=("self",))
                     .select_related("region", "deployment")
                     .filter(pk__in=list(case_ids), status=Case.Status.RECEIVED).order_by("pk"))
        if not cases:
            return []
        routes = router(cases)
        known = {case.pk for case in cases}
        routes = [route for route in routes if route.case_id in known]
        decisions = [Decision(case_id=r.case_id, label=r.model_label,
                              source=Decision.Source.MODEL,
                              policy_version_id=r.policy_version_id, rule=r.rule,
                              prediction_id=r.prediction_id)
                     for r in routes if r.model_label is not None]
        tasks = [ReviewTask(case_id=r.case_id, reason=r.review_reason,
                            policy_version_id=r.policy_version_id, rule=r.rule, urgent=r.urgent,
                            reason_rank=reason_priority(r.review_reason or ""),
                            audit_rate=r.audit_rate)
                 for r in routes if r.review_reason]
        Decision.objects.bulk_create(decisions)
        ReviewTask.objects.bulk_create(tasks)
        decided = [r.case_id for r in routes if r.model_label is not None]
        in_review = [r.case_id for r in routes if r.model_label is None]
        CaseEvent.objects.bulk_create(
            [_decided_event(decision) for decision in decisions]
            + [CaseEvent(case_id=r.case_id, type=CaseEvent.Type.QUEUED,
                         data={"queued": {"reason": r.review_reason,
                                           "queued_at": instant_text(now)}})
               for r in routes if r.model_label is None])
        Case.objects.filter(pk__in=decided).update(status=Case.Status.DECIDED, updated_at=now)
        Case.objects.filter(pk__in=in_review).update(status=Case.Status.IN_REVIEW,
                                                     updated_at=now)
    return [route.case_id for route in routes]


def _decided_event(decision: Decision) -> CaseEvent:
    return CaseEvent(case_id=decision.case_id, type=CaseEvent.Type.DECIDED,
                     data={"decision": {"label": decision.label, "source": decision.source,
                                        "decided_at": instant_text(decision.decided_at)}})


@dataclass(frozen=True, slots=True)
class Lease:
    """A claim on a task: who holds it, its fencing token, since when and until when."""

    reviewer_id: int
    token: UUID
    claimed_at: datetime
    expires_at: datetime


def review_task_open(
    *,
    case_id: int,
    reason: str,
    policy_version_id: int,
    rule: str = "",
    follows_id: int | None = None,
    urgent: bool = False,
    lease: Lease | None = None,
) -> ReviewTask:
    """Queue a case for a human, ranked for serving (or handed straight to `lease`'s holder:
    a gold case drawn for a claim)."""
    if reason not in Reason.values:
        raise ServiceError(f"unknown review reason {reason!r}", field="reason")
    task = ReviewTask(case_id=case_id, reason=reason, policy_version_id=policy_version_id,
                      rule=rule, follows_id=follows_id, urgent=urgent,
                      reason_rank=reason_priority(reason))
    if lease is not None:
        task.status = ReviewTask.Status.CLAIMED
        task.claimed_by_id = lease.reviewer_id
        task.claimed_at = lease.claimed_at
        task.lease_token = lease.token
        task.lease_expires_at = lease.expires_at
    task.save()
    if reason in (Reason.SECOND_OPINION, Reason.ESCALATION):
        logger.info("case %s: %s after review %s", case_id, reason, follows_id)
    return task


def gold_task_drop(*, task_id: int) -> None:
    """A gold task handed back: it was made for one claim; the gold case stays gold."""
    ReviewTask.objects.filter(pk=task_id, reason=Reason.GOLD).delete()


def review_task_hand_back(task: ReviewTask) -> None:
    """A claimed task back in the queue, as if never claimed (a gold task is dropped)."""
    if task.reason == Reason.GOLD:
        gold_task_drop(task_id=task.pk)
        return
    ReviewTask.objects.filter(pk=task.pk).update(
        status=ReviewTask.Status.OPEN, claimed_by=None, claimed_at=None, lease_token=None,
        lease_expires_at=None, blind_answer="", pending_answer="", pending_at=None,
        pending_until=None)


@dataclass(frozen=True, slots=True)
class Answer:
    """A reviewer's answer to a task, as read: stored only while the task is still as it was
    read (its holder, lease token and blind answer): the fencing check."""

    task_id: int
    case_id: int
    reviewer_id: int
    lease_token: UUID
    read_blind_answer: str
    answer: str
    mode: str
    seconds: float
    policy_version_id: int
    rule: str
    #: the answer concludes the review chain: it becomes the case's Decision, unless the case
    #: has one already (an audited model decision stands)
    decides: bool


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The review the chain needs next: a second opinion or an escalation."""

    reason: str
    urgent: bool


_AS_READ_SQL = ("id = %(task)s AND status = 'claimed' AND claimed_by_id = %(reviewer)s"
                " AND lease_token = %(token)s AND blind_answer = %(read_blind_answer)s")

_BLIND_ANSWER_SQL = f"""
    UPDATE reviewplatform_reviewtask SET blind_answer = %(answer)s
    WHERE {_AS_READ_SQL}"""  # noqa: S608

# One statement: the task done, the Review, the Decision when the chain concludes and the case
# has none yet, and the case decided only when this Decision was written.
_ANSWER_WRITE_SQL = f"""
    WITH done AS (
        UPDATE reviewplatform_reviewtask
        SET status = 'done', completed_at = %(now)s, lease_expires_at = NULL,
            pending_answer = '', pending_at = NULL, pending_until = NULL
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
    ), event AS (
        INSERT INTO reviewplatform_caseevent (uid, type, case_id, version, data, created_at)
        SELECT gen_random_uuid(), 'case.decided', case_id, 1,
               jsonb_build_object('decision', jsonb_build_object(
                   'label', %(answer)s::text, 'source', 'human',
                   'decided_at', %(decided_at_text)s::text)),
               %(created_at)s
        FROM decision
    )
    SELECT id FROM review"""  # noqa: S608


def _as_read(answer: Answer) -> dict[str, Any]:
    return {"task": answer.task_id, "reviewer": answer.reviewer_id,
            "token": answer.lease_token, "read_blind_answer": answer.read_blind_answer}


def blind_answer_store(answer: Answer) -> bool:
    """Blind-then-reveal: keep the first answer on the task; False when the task changed."""
    with connection.cursor() as cursor:
        cursor.execute(_BLIND_ANSWER_SQL, {**_as_read(answer), "answer": answer.answer})
        return cursor.rowcount == 1


def answer_store(answer: Answer, *, follow_up: FollowUp | None, now: datetime
                 ) -> tuple[int, datetime] | None:
    """Store the answer: the task done, its Review, and the Decision when `decides`; a
    follow-up task in the same transaction. Returns (review id, its time), or None when the
    task changed since it was read (nothing written)."""
    created_at = timezone.now()
    # A lone statement commits on its own; a follow-up shares the answer's transaction.
    atomic = transaction.atomic() if follow_up is not None else contextlib.nullcontext()
    with atomic, connection.cursor() as cursor:
        cursor.execute(_ANSWER_WRITE_SQL, {
            **_as_read(answer), "case": answer.case_id, "answer": answer.answer,
            "mode": answer.mode, "seconds": answer.seconds, "created_at": created_at,
            "now": now, "decides": answer.decides, "decided_at_text": instant_text(created_at),
            "policy_version": answer.policy_version_id, "rule": answer.rule})
        stored = cursor.fetchone()
        if stored is None:
            return None
        (review_id,) = stored
        if follow_up is not None:
            review_task_open(case_id=answer.case_id, reason=follow_up.reason,
                             policy_version_id=answer.policy_version_id, rule=answer.rule,
                             follows_id=review_id, urgent=follow_up.urgent)
    return review_id, created_at
