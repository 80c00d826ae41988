"""Claiming: serving order, leases (renewal, expiry, release), fencing, and 20 reviewers at once."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.utils import timezone

from review.services import (
    review_claim_next,
    review_lease_renew,
    review_release,
    review_submit,
    review_tasks_rank,
)
from reviewplatform.errors import Conflict
from reviewplatform.models import Case, Decision, Review, ReviewTask
from rollout.selectors import policy_current
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


def answer(task: ReviewTask, reviewer: User, label: str = "3", **kwargs) -> Review:
    return review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                         answer=label, **kwargs)


# Serving order


def test_it_serves_urgent_cases_first(enqueue, deployment, reviewer):
    deployment.urgent_labels = ["9"]
    deployment.save()
    enqueue(says="3")
    enqueue(reason=ReviewTask.Reason.OUT_OF_DOMAIN, says="4")
    urgent = enqueue(says="9")

    assert urgent.urgent
    assert review_claim_next(reviewer=reviewer).pk == urgent.pk


def test_it_serves_by_reason_priority_then_oldest(enqueue, reviewer, other_reviewer):
    oldest_shadow = enqueue()
    enqueue()
    audit = enqueue(reason=ReviewTask.Reason.AUDIT)
    low = enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE)

    assert review_claim_next(reviewer=reviewer).pk == low.pk
    assert review_claim_next(reviewer=other_reviewer).pk == oldest_shadow.pk
    assert audit.reason_rank < oldest_shadow.reason_rank


def test_it_takes_reason_priorities_from_the_settings(enqueue, reviewer, settings):
    settings.REVIEW_REASON_PRIORITY = {"audit": 99}
    enqueue()
    audit = enqueue(reason=ReviewTask.Reason.AUDIT)

    assert review_claim_next(reviewer=reviewer).pk == audit.pk


def waited(task: ReviewTask, **delta: float) -> ReviewTask:
    """The task, as if created this long ago."""
    ReviewTask.objects.filter(pk=task.pk).update(created_at=timezone.now() - timedelta(**delta))
    return ReviewTask.objects.get(pk=task.pk)


def test_it_serves_an_overdue_audit_before_an_older_shadow_task(enqueue, reviewer, settings):
    settings.AUDIT_SERVE_WITHIN_SECONDS = 900
    older_shadow = waited(enqueue(), minutes=60)
    enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE)
    audit = waited(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=16)

    assert review_claim_next(reviewer=reviewer).pk == audit.pk
    assert older_shadow.created_at < audit.created_at


def test_it_leaves_a_fresh_audit_in_its_place(enqueue, reviewer, other_reviewer, settings):
    settings.AUDIT_SERVE_WITHIN_SECONDS = 900
    shadow = waited(enqueue(), minutes=60)
    audit = waited(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=14)

    assert review_claim_next(reviewer=reviewer).pk == shadow.pk
    assert review_claim_next(reviewer=other_reviewer).pk == audit.pk


def test_it_serves_overdue_audits_oldest_first(enqueue, reviewer, other_reviewer):
    newer = waited(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=20)
    older = waited(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=40)
    ReviewTask.objects.filter(pk=newer.pk).update(priority=5)
    enqueue(reason=ReviewTask.Reason.ESCALATION)
    enqueue(reason=ReviewTask.Reason.SECOND_OPINION)

    assert review_claim_next(reviewer=reviewer).pk == older.pk
    assert review_claim_next(reviewer=other_reviewer).pk == newer.pk


def test_it_still_serves_urgent_cases_before_an_overdue_audit(enqueue, deployment, reviewer):
    deployment.urgent_labels = ["9"]
    deployment.save()
    waited(enqueue(reason=ReviewTask.Reason.AUDIT), hours=3)
    urgent = enqueue(says="9")

    assert review_claim_next(reviewer=reviewer).pk == urgent.pk


def test_it_takes_back_an_overdue_audit_whose_lease_expired(enqueue, reviewer, other_reviewer):
    audit = waited(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=30)
    now = timezone.now()
    assert review_claim_next(reviewer=reviewer, now=now).pk == audit.pk
    enqueue(reason=ReviewTask.Reason.LOW_CONFIDENCE)
    later = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS + 1)

    assert review_claim_next(reviewer=other_reviewer, now=later).pk == audit.pk


def test_it_serves_an_audit_overdue_at_the_claim_s_own_time(enqueue, reviewer, settings):
    settings.AUDIT_SERVE_WITHIN_SECONDS = 600
    enqueue()
    audit = enqueue(reason=ReviewTask.Reason.AUDIT)

    assert review_claim_next(reviewer=reviewer, now=audit.created_at + timedelta(seconds=601)
                             ).pk == audit.pk


def test_it_serves_an_overdue_audit_skipped_by_the_reviewer_last(enqueue, reviewer):
    audit = waited(enqueue(reason=ReviewTask.Reason.AUDIT), minutes=30)
    shadow = enqueue()

    assert review_claim_next(reviewer=reviewer, skipped=[audit.pk]).pk == shadow.pk


def test_it_ranks_tasks_written_without_a_rank_before_serving(make_case, stored_champion,
                                                              deployment, reviewer):
    """Routing code that writes ReviewTask rows itself still gets urgent cases served first."""
    from inference.models import Prediction

    deployment.urgent_labels = ["9"]
    deployment.save()
    policy = policy_current(deployment_id=deployment.pk)
    cases = [make_case() for _ in range(3)]
    Prediction.objects.create(case=cases[2], model_version=stored_champion, status="ok",
                              label="9", confidence=0.6, probabilities={"9": 0.6})
    tasks = [ReviewTask.objects.create(case=case, reason="shadow", policy_version=policy)
             for case in cases]
    assert all(task.reason_rank is None for task in tasks)

    assert review_claim_next(reviewer=reviewer).pk == tasks[2].pk
    assert not ReviewTask.objects.filter(reason_rank__isnull=True).exists()
    assert review_tasks_rank() == 0


def test_it_never_hands_an_escalation_to_a_reviewer_who_is_not_senior(enqueue, reviewer,
                                                                      senior):
    escalated = enqueue(reason=ReviewTask.Reason.ESCALATION)
    shadow = enqueue()

    assert review_claim_next(reviewer=reviewer).pk == shadow.pk
    assert review_claim_next(reviewer=senior).pk == escalated.pk


# Leases


def test_it_renews_the_lease_of_the_holder(enqueue, reviewer):
    enqueue()
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)
    later = now + timedelta(seconds=200)

    renewed = review_lease_renew(task_id=held.pk, lease_token=held.lease_token,
                                 reviewer=reviewer, now=later)

    assert renewed.lease_expires_at == later + timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
    assert renewed.lease_token == held.lease_token


def test_it_keeps_a_renewed_lease_from_other_reviewers(enqueue, reviewer, other_reviewer):
    enqueue()
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)
    lease = settings.REVIEW_LEASE_SECONDS
    review_lease_renew(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                       now=now + timedelta(seconds=lease - 5))

    assert review_claim_next(reviewer=other_reviewer, now=now + timedelta(seconds=lease + 5)) \
        is None


def test_it_refuses_to_renew_a_lease_that_passed_to_someone_else(enqueue, reviewer,
                                                                 other_reviewer):
    enqueue()
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)
    later = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS + 1)
    review_claim_next(reviewer=other_reviewer, now=later)

    with pytest.raises(Conflict, match="passed to another reviewer"):
        review_lease_renew(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                           now=later)


def test_it_gives_a_closed_page_only_a_short_grace(enqueue, reviewer, other_reviewer):
    task = enqueue()
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)

    review_lease_renew(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                       seconds=15, now=now)

    assert review_claim_next(reviewer=other_reviewer, now=now + timedelta(seconds=10)) is None
    assert review_claim_next(reviewer=other_reviewer,
                             now=now + timedelta(seconds=16)).pk == task.pk


def test_it_lets_the_holder_answer_after_the_lease_ran_out_if_nobody_took_it(enqueue,
                                                                             reviewer):
    enqueue()
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)

    review = answer(held, reviewer, now=now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS * 2))

    assert Decision.objects.get().review == review


def test_it_refuses_a_late_answer_with_a_clear_message_and_stores_nothing(enqueue, reviewer,
                                                                        other_reviewer):
    enqueue()
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)
    later = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS + 1)
    theirs = review_claim_next(reviewer=other_reviewer, now=later)

    with pytest.raises(Conflict) as refused:
        answer(held, reviewer, now=later)

    assert "passed to another reviewer" in refused.value.message
    assert "not stored" in refused.value.message
    assert not Review.objects.exists()
    answer(theirs, other_reviewer, "5")
    assert Decision.objects.get().label == "5"


def test_it_returns_an_expired_lease_in_serving_order(enqueue, reviewer, other_reviewer):
    """An expired lease competes with open tasks by the same order: it is not served last."""
    older = enqueue()
    enqueue()
    now = timezone.now()
    review_claim_next(reviewer=reviewer, now=now)
    later = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS + 1)

    assert review_claim_next(reviewer=other_reviewer, now=later).pk == older.pk


def test_it_does_not_hand_a_skipped_task_back_while_others_wait(enqueue, reviewer):
    first = enqueue()
    second = enqueue()
    held = review_claim_next(reviewer=reviewer)
    review_release(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer)

    assert review_claim_next(reviewer=reviewer, skipped=[first.pk]).pk == second.pk


# Many reviewers at once, on PostgreSQL


def _reviewers(n: int) -> list[User]:
    group = Group.objects.get(name="reviewer")
    users = [User.objects.create_user(username=f"crowd-{i}") for i in range(n)]
    for user in users:
        user.groups.add(group)
    return users


@pytest.mark.django_db(transaction=True)
def test_it_gives_20_reviewers_working_at_once_different_cases_and_loses_none(
        deployment, client_user, make_case, stored_champion):
    from review.services import review_task_create

    policy = policy_current(deployment_id=deployment.pk)
    tasks = [review_task_create(case=make_case(), reason="shadow", policy_version=policy)
             for _ in range(120)]
    reviewers = _reviewers(20)
    start = threading.Barrier(len(reviewers))
    claims: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(reviewer: User) -> None:
        from django.db import connection as own_connection

        try:
            start.wait(timeout=30)
            while (task := review_claim_next(reviewer=reviewer)) is not None:
                with lock:
                    claims.append((task.pk, reviewer.username))
                review_submit(task_id=task.pk, lease_token=task.lease_token,
                              reviewer=reviewer, answer=str(task.pk % 10))
        except BaseException as exc:
            errors.append(exc)
        finally:
            own_connection.close()

    threads = [threading.Thread(target=work, args=(reviewer,)) for reviewer in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    claimed_ids = [task_id for task_id, _ in claims]
    assert len(claimed_ids) == len(set(claimed_ids)) == len(tasks)  # none handed to two
    assert len({name for _, name in claims}) > 1  # the work was really shared
    assert Review.objects.count() == len(tasks)
    assert Decision.objects.count() == len(tasks)  # none lost
    assert not Case.objects.exclude(status=Case.Status.DECIDED).exists()
    for decision in Decision.objects.select_related("review__task"):
        assert decision.label == str(decision.review.task_id % 10)


@pytest.mark.django_db(transaction=True)
def test_it_hands_20_simultaneous_claims_20_different_tasks(deployment, make_case,
                                                            stored_champion):
    from review.services import review_task_create

    policy = policy_current(deployment_id=deployment.pk)
    for _ in range(25):
        review_task_create(case=make_case(), reason="shadow", policy_version=policy)
    reviewers = _reviewers(20)
    start = threading.Barrier(len(reviewers))
    got: dict[str, uuid.UUID | None] = {}
    held: dict[str, int | None] = {}

    def claim(reviewer: User) -> None:
        from django.db import connection as own_connection

        try:
            start.wait(timeout=30)
            task = review_claim_next(reviewer=reviewer)
            held[reviewer.username] = task.pk if task else None
            got[reviewer.username] = task.lease_token if task else None
        finally:
            own_connection.close()

    threads = [threading.Thread(target=claim, args=(reviewer,)) for reviewer in reviewers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert None not in held.values()
    assert len(set(held.values())) == 20
    assert ReviewTask.objects.filter(status=ReviewTask.Status.CLAIMED).count() == 20
