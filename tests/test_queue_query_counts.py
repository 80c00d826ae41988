"""Query counts on the queue's hot path, pinned so that they do not creep back.

Every statement is a round trip; under load a round trip costs far more than the work the
database does for it. On PostgreSQL a claim is one statement and an answer two.
"""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import User
from django.test import Client

from review.services import review_answer_pend, review_claim_next, review_submit
from reviewplatform.models import Decision, ReviewTask
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures


@pytest.fixture
def signed_in(reviewer) -> User:
    """The reviewer as a request sees them once the page's permission check has run."""
    user = User.objects.get(pk=reviewer.pk)
    assert user.has_perm("reviewplatform.add_review")
    return user


def test_it_claims_the_next_task_in_one_statement(enqueue, signed_in,
                                                  django_assert_max_num_queries):
    enqueue()
    task = enqueue(says="9", confidence=0.99)

    with django_assert_max_num_queries(1):
        claimed = review_claim_next(reviewer=signed_in)

    assert claimed.pk != task.pk  # the older one
    stored = ReviewTask.objects.get(pk=claimed.pk)
    assert (claimed.status, claimed.claimed_by_id) == (ReviewTask.Status.CLAIMED, signed_in.pk)
    assert (stored.status, stored.claimed_by_id, stored.lease_token) == (
        ReviewTask.Status.CLAIMED, signed_in.pk, claimed.lease_token)
    assert isinstance(claimed.lease_token, uuid.UUID)


def test_it_hands_back_a_held_task_in_one_statement(enqueue, signed_in,
                                                   django_assert_max_num_queries):
    enqueue()
    enqueue()
    held = review_claim_next(reviewer=signed_in)

    with django_assert_max_num_queries(1):
        again = review_claim_next(reviewer=signed_in)

    assert (again.pk, again.lease_token) == (held.pk, held.lease_token)


def test_it_finds_an_empty_queue_in_one_statement(deployment, signed_in,
                                                  django_assert_max_num_queries):
    with django_assert_max_num_queries(1):
        assert review_claim_next(reviewer=signed_in) is None


def test_it_stores_an_answer_and_the_decision_in_two_statements(
        enqueue, signed_in, django_assert_max_num_queries):
    task = enqueue(says="4", confidence=0.6)
    claimed = review_claim_next(reviewer=signed_in)

    with django_assert_max_num_queries(2):
        review = review_submit(task_id=claimed.pk, lease_token=claimed.lease_token,
                               reviewer=signed_in, answer="9")

    assert Decision.objects.get(case=task.case).review == review


def test_it_answers_from_the_review_page_in_two_statements(enqueue, signed_in,
                                                           django_assert_max_num_queries):
    enqueue()
    claimed = review_claim_next(reviewer=signed_in)

    # The page's answer is held for undo (`review.pending`): one read, one guarded write.
    with django_assert_max_num_queries(2):
        review_answer_pend(task_id=claimed.pk, lease_token=claimed.lease_token,
                           reviewer=signed_in, answer="3")

    held = ReviewTask.objects.get(pk=claimed.pk)
    assert (held.status, held.pending_answer) == (ReviewTask.Status.CLAIMED, "3")


def test_it_keeps_an_answer_and_the_next_claim_on_the_page_to_a_few_queries(
        enqueue, reviewer, django_assert_max_num_queries):
    """Session, user, permissions, the answer, the next claim."""
    enqueue()
    enqueue()
    client = Client()
    client.force_login(reviewer)
    first = ReviewTask.objects.get(pk=client.post("/review/next/")["Location"]
                                   .rstrip("/").split("/")[-1])

    with django_assert_max_num_queries(7):
        response = client.post(f"/review/tasks/{first.pk}/answer/",
                               {"answer": "3", "lease_token": str(first.lease_token)})

    assert response.status_code == 302
    assert response["Location"] != f"/review/tasks/{first.pk}/"


def test_it_shows_an_assisted_review_page_in_a_fixed_number_of_queries(
        enqueue, reviewer, deployment, django_assert_max_num_queries):
    """Session, user, two permission checks, the task, the session's count, the model's
    answer, the next case, the last answers, the guidelines' examples and the session's save
    (three statements); and one for the similar cases people decided, however many there
    are: their nearest by the champion's features, found, labelled and ordered in one
    statement."""
    deployment.review_mode = "assisted"
    deployment.save()
    enqueue(says="3")
    client = Client()
    client.force_login(reviewer)
    location = client.post("/review/next/")["Location"]

    # 13, then one for the similar decided cases and one for the answers pending for undo.
    with django_assert_max_num_queries(15):
        response = client.get(location)

    assert response.status_code == 200
    assert response.context["model"] == {"label": "3", "confidence": 0.97}
