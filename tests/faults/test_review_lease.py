"""A reviewer's lease expires mid-review: another reviewer takes the task, the late answer is
refused (whether it comes before or after the new holder's), and the task is decided once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from review.services import review_claim_next, review_submit
from reviewplatform.errors import Conflict
from reviewplatform.models import Review
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

from .reconcile import reconcile

pytestmark = pytest.mark.faults
CASES = 100


def test_a_late_answer_after_the_lease_expired_is_refused_and_the_task_decided_once(
        enqueue, deployment, reviewer, other_reviewer, faults_record):
    tasks = [enqueue(says=str(n % 10)) for n in range(CASES)]
    lease = timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
    now = timezone.now()
    refused = 0
    for n, task in enumerate(tasks):
        # The first reviewer opens the case and walks away; the lease runs out.
        held = review_claim_next(reviewer=reviewer, now=now)
        assert held.pk == task.pk
        now += lease + timedelta(seconds=1)
        taken = review_claim_next(reviewer=other_reviewer, now=now)
        assert (taken.pk, taken.claimed_by) == (task.pk, other_reviewer)
        answer = str(n % 10)

        def late() -> None:
            nonlocal refused
            with pytest.raises(Conflict):
                review_submit(task_id=task.pk, lease_token=held.lease_token,
                              reviewer=reviewer, answer=answer, now=now)
            refused += 1

        if n % 2:  # the late answer comes before the new holder's, or after it
            late()
        review_submit(task_id=task.pk, lease_token=taken.lease_token,
                      reviewer=other_reviewer, answer=answer, now=now)
        if not n % 2:
            late()
        now += timedelta(seconds=5)

    assert refused == CASES
    assert not Review.objects.filter(reviewer=reviewer).exists()
    tally = faults_record(reconcile(fault="review lease expires mid-review",
                                    deployment=deployment,
                                    external_ids=[t.case.external_id for t in tasks]))
    assert (tally.decided, tally.waiting) == (CASES, 0)
