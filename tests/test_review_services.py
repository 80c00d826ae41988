"""The review queue: claiming with a lease, answering, releasing."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inference.models import ModelVersion, Prediction
from review.services import review_claim_next, review_release, review_submit
from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.models import Case, Decision, Review, ReviewTask
from reviewplatform.pipeline import case_route
from reviewplatform.services import case_submit
from rollout.selectors import policy_current
from rollout.services import policy_publish
from tests.conftest import CAPTURED_AT, png_bytes


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def queue(deployment, client_user, make_upload, django_capture_on_commit_callbacks):
    """Submit and route n cases (shadow stage: each gets a review task); their tasks, oldest first.
    """
    def make(n: int) -> list[ReviewTask]:
        tasks = []
        for i in range(n):
            # The prediction job is captured and never run: the cases are routed directly.
            with django_capture_on_commit_callbacks(execute=False):
                case = case_submit(deployment=deployment, region_code="north",
                                   image=make_upload(content=png_bytes(color=f"#0000{i:02x}")),
                                   captured_at=CAPTURED_AT, external_id=f"case-{i}",
                                   submitted_by=client_user)
            case_route(case_id=case.pk)
            tasks.append(ReviewTask.objects.get(case=case))
        return tasks
    return make


def nothing_stored() -> bool:
    return not Review.objects.exists() and not Decision.objects.exists()


def test_it_queues_a_shadow_task_for_a_routed_case(queue, deployment):
    (task,) = queue(1)

    assert task.reason == ReviewTask.Reason.SHADOW
    assert task.status == ReviewTask.Status.OPEN
    assert task.policy_version == policy_current(deployment_id=deployment.pk)
    assert Case.objects.get().status == Case.Status.IN_REVIEW


@pytest.fixture
def model_decides(deployment, admin_user, client_user, make_upload,
                  django_capture_on_commit_callbacks):
    """In full stage, submit a case, store a confident champion prediction and route it."""
    # A stored prediction is all routing reads: the model itself is not run here.
    champion = ModelVersion.objects.create(deployment=deployment, name="champion",
                                           artifact="models/champion.pkl", sha256="0" * 64,
                                           labels=deployment.labels, is_champion=True)

    def route_with(*, audit_rate: float) -> Case:
        policy_publish(deployment=deployment, stage="full", rules=[], actor=admin_user,
                       confidence_threshold=0.5, audit_rate=audit_rate, reason="test")
        with django_capture_on_commit_callbacks(execute=False):
            case = case_submit(deployment=deployment, region_code="north",
                               image=make_upload(), captured_at=CAPTURED_AT,
                               external_id=f"audited-{audit_rate}", submitted_by=client_user)
        Prediction.objects.create(case=case, model_version=champion, status="ok", label="2",
                                  confidence=0.99, probabilities={"2": 0.99})
        case_route(case_id=case.pk)
        return Case.objects.get(pk=case.pk)
    return route_with


def test_it_lets_the_model_decide_without_review_when_nothing_is_audited(model_decides):
    case = model_decides(audit_rate=0.0)

    assert case.status == Case.Status.DECIDED
    assert case.decision.source == Decision.Source.MODEL
    assert not ReviewTask.objects.filter(case=case).exists()


def test_it_sends_an_audit_sample_of_model_decisions_to_a_reviewer(model_decides, reviewer):
    # shared/DESIGN.md: "a sampled share also goes to a reviewer as an audit"; at rate 1 every
    # model decision is audited.
    case = model_decides(audit_rate=1.0)

    assert case.decision.source == Decision.Source.MODEL
    tasks = list(ReviewTask.objects.filter(case=case))
    assert len(tasks) == 1, f"expected one audit task, got {tasks}"
    task = tasks[0]
    assert task.reason == ReviewTask.Reason.AUDIT
    assert review_claim_next(reviewer=reviewer).pk == task.pk


def test_it_hands_out_the_oldest_task_first(queue, reviewer):
    oldest, *_ = queue(3)

    task = review_claim_next(reviewer=reviewer)

    assert task.pk == oldest.pk
    stored = ReviewTask.objects.get(pk=task.pk)
    assert (stored.status, stored.claimed_by, stored.lease_token) == (
        ReviewTask.Status.CLAIMED, reviewer, task.lease_token)
    assert isinstance(stored.lease_token, uuid.UUID)
    assert stored.lease_expires_at == stored.claimed_at + timedelta(
        seconds=settings.REVIEW_LEASE_SECONDS)
    assert stored.lease_expires_at > timezone.now()


def test_it_hands_out_higher_priority_tasks_first(queue, reviewer):
    _, urgent, _ = queue(3)
    ReviewTask.objects.filter(pk=urgent.pk).update(priority=5)

    assert review_claim_next(reviewer=reviewer).pk == urgent.pk


def test_it_gives_two_reviewers_different_tasks(queue, reviewer, other_reviewer):
    first, second = queue(2)

    mine = review_claim_next(reviewer=reviewer)
    theirs = review_claim_next(reviewer=other_reviewer)

    assert {mine.pk, theirs.pk} == {first.pk, second.pk}


def test_it_gives_nothing_when_every_task_is_held(queue, reviewer, other_reviewer):
    queue(1)
    review_claim_next(reviewer=reviewer)

    assert review_claim_next(reviewer=other_reviewer) is None


def test_it_gives_nothing_when_the_queue_is_empty(deployment, reviewer):
    assert review_claim_next(reviewer=reviewer) is None


def test_it_gives_a_reviewer_the_task_they_already_hold(queue, reviewer):
    queue(3)
    held = review_claim_next(reviewer=reviewer)

    again = review_claim_next(reviewer=reviewer)

    assert again.pk == held.pk
    assert again.lease_token == held.lease_token
    assert ReviewTask.objects.filter(status=ReviewTask.Status.CLAIMED).count() == 1


def test_it_hands_an_expired_lease_to_another_reviewer(queue, reviewer, other_reviewer):
    (task,) = queue(1)
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)
    later = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS + 1)

    taken = review_claim_next(reviewer=other_reviewer, now=later)

    assert taken.pk == task.pk
    assert taken.lease_token != held.lease_token
    with pytest.raises(Conflict):
        review_submit(task_id=task.pk, lease_token=held.lease_token, reviewer=reviewer,
                      answer="3", now=later)
    assert nothing_stored()
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLAIMED
    assert task.claimed_by == other_reviewer


def test_it_keeps_a_lease_that_has_not_expired(queue, reviewer, other_reviewer):
    queue(1)
    now = timezone.now()
    review_claim_next(reviewer=reviewer, now=now)
    almost = now + timedelta(seconds=settings.REVIEW_LEASE_SECONDS - 1)

    assert review_claim_next(reviewer=other_reviewer, now=almost) is None


def test_it_stores_an_answer_and_the_human_decision(queue, reviewer):
    (task,) = queue(1)
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)

    review = review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                           answer="7", now=now + timedelta(seconds=4))

    assert review.answer == "7"
    assert review.mode == Review.Mode.BLIND
    assert review.seconds == pytest.approx(4)
    assert review.reviewer == reviewer
    decision = Decision.objects.get()
    assert decision.case_id == task.case_id
    assert decision.label == "7"
    assert decision.source == Decision.Source.HUMAN
    assert decision.review == review
    assert decision.policy_version_id == task.policy_version_id
    assert Case.objects.get().status == Case.Status.DECIDED
    held.refresh_from_db()
    assert held.status == ReviewTask.Status.DONE


@pytest.mark.parametrize("answer", [Review.CANNOT_TELL, Review.OUT_OF_DOMAIN])
def test_it_accepts_cannot_tell_and_out_of_domain(queue, reviewer, answer):
    queue(1)
    held = review_claim_next(reviewer=reviewer)

    review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                  answer=answer)

    assert Decision.objects.get().label == answer


def test_it_never_takes_a_negative_time_to_answer(queue, reviewer):
    queue(1)
    now = timezone.now()
    held = review_claim_next(reviewer=reviewer, now=now)

    review = review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                           answer="1", now=now - timedelta(seconds=30))

    assert review.seconds == 0.0
    assert Review.objects.get(pk=review.pk).seconds == 0.0


@pytest.mark.parametrize("answer", ["cat", "", "10", "7 "])
def test_it_refuses_an_answer_outside_the_labels(queue, reviewer, answer):
    queue(1)
    held = review_claim_next(reviewer=reviewer)

    with pytest.raises(ServiceError) as refused:
        review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                      answer=answer)

    assert not isinstance(refused.value, Conflict)
    assert refused.value.field == "answer"
    assert nothing_stored()
    held.refresh_from_db()
    assert held.status == ReviewTask.Status.CLAIMED
    assert Case.objects.get().status == Case.Status.IN_REVIEW


def test_it_refuses_an_answer_with_the_wrong_lease_token(queue, reviewer):
    queue(1)
    held = review_claim_next(reviewer=reviewer)

    with pytest.raises(Conflict):
        review_submit(task_id=held.pk, lease_token=uuid.uuid4(), reviewer=reviewer, answer="7")

    assert nothing_stored()


def test_it_refuses_an_answer_from_a_reviewer_who_does_not_hold_the_task(
        queue, reviewer, other_reviewer):
    queue(1)
    held = review_claim_next(reviewer=reviewer)

    with pytest.raises(Conflict):
        review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=other_reviewer,
                      answer="7")

    assert nothing_stored()


def test_it_refuses_a_second_answer_to_the_same_task(queue, reviewer):
    queue(1)
    held = review_claim_next(reviewer=reviewer)
    review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer, answer="7")

    with pytest.raises(Conflict):
        review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer,
                      answer="8")

    assert Review.objects.count() == 1
    assert Decision.objects.get().label == "7"


def test_it_never_gives_a_reviewer_a_case_they_already_reviewed(queue, reviewer,
                                                                other_reviewer):
    (task,) = queue(1)
    held = review_claim_next(reviewer=reviewer)
    review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer, answer="7")
    second = ReviewTask.objects.create(case=task.case, reason=ReviewTask.Reason.SECOND_OPINION,
                                       policy_version=task.policy_version)

    assert review_claim_next(reviewer=reviewer) is None
    assert review_claim_next(reviewer=other_reviewer).pk == second.pk


def test_it_keeps_the_first_decision_when_a_second_opinion_is_answered(
        queue, reviewer, other_reviewer):
    (task,) = queue(1)
    held = review_claim_next(reviewer=reviewer)
    review_submit(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer, answer="7")
    ReviewTask.objects.create(case=task.case, reason=ReviewTask.Reason.SECOND_OPINION,
                              policy_version=task.policy_version)
    second = review_claim_next(reviewer=other_reviewer)

    review_submit(task_id=second.pk, lease_token=second.lease_token, reviewer=other_reviewer,
                  answer="1")

    assert Review.objects.count() == 2
    assert Decision.objects.get().label == "7"


def test_it_returns_a_released_task_to_the_queue(queue, reviewer, other_reviewer):
    (task,) = queue(1)
    held = review_claim_next(reviewer=reviewer)

    review_release(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer)

    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN
    assert task.claimed_by is None
    assert task.lease_token is None
    assert review_claim_next(reviewer=other_reviewer).pk == task.pk


def test_it_refuses_a_release_with_the_wrong_lease_token(queue, reviewer):
    queue(1)
    held = review_claim_next(reviewer=reviewer)

    with pytest.raises(Conflict):
        review_release(task_id=held.pk, lease_token=uuid.uuid4(), reviewer=reviewer)

    held.refresh_from_db()
    assert held.status == ReviewTask.Status.CLAIMED
    assert held.claimed_by == reviewer


def test_it_hands_out_skipped_tasks_last(queue, reviewer):
    first, second = queue(2)
    held = review_claim_next(reviewer=reviewer)
    assert held.pk == first.pk
    review_release(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer)

    assert review_claim_next(reviewer=reviewer, skipped=[first.pk]).pk == second.pk


def test_it_hands_out_a_skipped_task_when_nothing_else_is_left(queue, reviewer):
    (task,) = queue(1)
    held = review_claim_next(reviewer=reviewer)
    review_release(task_id=held.pk, lease_token=held.lease_token, reviewer=reviewer)

    assert review_claim_next(reviewer=reviewer, skipped=[task.pk]).pk == task.pk


@pytest.mark.django_db(transaction=True)
def test_it_skips_a_task_that_another_claim_has_locked(deployment, client_user, reviewer,
                                                       other_reviewer):
    """Two claims at once never get the same task: a row locked by one is skipped by the other.

    Runs on real connections (committed data, two sessions): the lock is held by this thread
    while another thread claims.
    """
    tasks = []
    for i in range(2):
        # Rows written directly (no case_submit): its on-commit prediction job would run here.
        case = Case.objects.create(
            deployment=deployment, region=deployment.regions.get(code="north"),
            external_id=f"case-{i}", image=f"cases/{i}.png", image_sha256="0" * 64, width=32,
            height=32, captured_at=CAPTURED_AT, submitted_by=client_user)
        case_route(case_id=case.pk)
        tasks.append(ReviewTask.objects.get(case=case))
    claimed: dict[str, object] = {}

    def claim_elsewhere() -> None:
        from django.db import connection as thread_connection

        try:
            with thread_connection.cursor() as cursor:
                # Fail instead of hanging if the claim waits for the lock.
                cursor.execute("SET lock_timeout = '5s'")
            claimed["task"] = review_claim_next(reviewer=other_reviewer)
        except Exception as exc:
            claimed["error"] = exc
        finally:
            thread_connection.close()

    with transaction.atomic():
        locked = ReviewTask.objects.select_for_update().get(pk=tasks[0].pk)
        thread = threading.Thread(target=claim_elsewhere)
        thread.start()
        thread.join(timeout=30)

    assert "error" not in claimed, claimed.get("error")
    assert claimed["task"].pk == tasks[1].pk != locked.pk
