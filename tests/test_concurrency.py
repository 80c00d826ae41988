"""Work done at the same time on real connections: inference claims, batches that wait for
more cases, and two answers to one task. Each thread has its own database session, so these
tests run with committed data (`transaction=True`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from inference import services as inference
from inference.models import InferenceClaim, Prediction
from review.services import review_claim_next, review_submit
from reviewplatform import pipeline
from reviewplatform.errors import Conflict
from reviewplatform.models import Case, Decision, Review, ReviewTask
from tests.conftest import CAPTURED_AT
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

pytestmark = pytest.mark.django_db(transaction=True)


def run_at_once(*calls: Callable[[], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run each call in its own thread (its own connection), released together."""
    start = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)
    errors: list[BaseException] = []

    def work(i: int, call: Callable[[], Any]) -> None:
        from django.db import connection as own_connection

        try:
            start.wait(timeout=30)
            results[i] = call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            own_connection.close()

    threads = [threading.Thread(target=work, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    return results, errors


def test_two_inference_claims_at_once_never_take_the_same_case(received):
    cases = [received().pk for _ in range(40)]

    def drain() -> list[int]:
        """A worker's claims, batch after batch, until nothing is left to claim."""
        claimed: list[int] = []
        while ids := inference.cases_claim(limit=5):
            claimed += ids
        return claimed

    (first, second), errors = run_at_once(drain, drain)

    assert errors == []
    assert set(first).isdisjoint(second)
    assert sorted(first + second) == cases  # every case claimed, once
    claims = dict(InferenceClaim.objects.values_list("case_id", "attempts"))
    assert claims == {case_id: 1 for case_id in cases}


def test_a_claim_that_began_before_another_committed_leaves_its_cases_alone(deployment,
                                                                            client_user):
    """A claim's statement sees the claims as they were when it began. Another worker that
    claimed the same cases and committed meanwhile has released its row locks without
    changing the case rows, so those cases look free. Many waiting cases make each claim
    slow enough that a second claim started a little later overlaps the first one's commit;
    the start is spread over the first claim's duration, so some attempt lands in that gap."""
    region = deployment.regions.get(code="north")
    Case.objects.bulk_create([
        Case(deployment=deployment, region=region, external_id=f"b-{i}", image="cases/b.png",
             image_sha256="0" * 64, width=8, height=8, captured_at=CAPTURED_AT,
             submitted_by=client_user) for i in range(10_000)])
    started = time.monotonic()
    alone = inference.cases_claim(limit=25)
    duration = time.monotonic() - started

    def claim_after(seconds: float) -> list[int]:
        time.sleep(seconds)
        return inference.cases_claim(limit=25)

    claimed = [alone]
    for attempt in range(12):
        delay = duration * (attempt % 6 + 1) / 6
        (first, second), errors = run_at_once(lambda: inference.cases_claim(limit=25),
                                              lambda d=delay: claim_after(d))
        assert errors == []
        assert set(first).isdisjoint(second), f"claimed twice after {delay * 1000:.0f} ms"
        claimed += [first, second]
    every = [case_id for ids in claimed for case_id in ids]
    assert len(every) == len(set(every)) == InferenceClaim.objects.count()
    assert set(InferenceClaim.objects.values_list("attempts", flat=True)) == {1}


def test_a_batch_waits_for_cases_submitted_meanwhile_and_takes_them_all(received,
                                                                        fake_learner,
                                                                        monkeypatch):
    waiting = [received().pk for _ in range(2)]
    predicted: list[list[int]] = []
    predictions_make = inference.predictions_make

    def spy(*, case_ids, **options):
        predicted.append(sorted(case_ids))
        return predictions_make(case_ids=case_ids, **options)

    monkeypatch.setattr(inference, "predictions_make", spy)
    later: list[int] = []

    def submit_three_later() -> None:
        from django.db import connection as own_connection

        try:
            time.sleep(0.3)
            later.extend(received().pk for _ in range(3))
        finally:
            own_connection.close()

    thread = threading.Thread(target=submit_three_later)
    thread.start()
    started = time.monotonic()
    taken = pipeline.predict_waiting(batch_size=8, wait_ms=1500)
    waited = time.monotonic() - started
    thread.join(timeout=30)

    assert taken == 5
    assert predicted == [sorted(waiting + later)]  # one batch, all five
    assert fake_learner == [5]  # one forward pass
    assert 1.4 <= waited < 10  # the batch was not full: it waited the whole wait_ms
    assert Prediction.objects.filter(status="ok", label="7").count() == 5
    assert not Case.objects.filter(status=Case.Status.RECEIVED).exists()
    assert sorted(ReviewTask.objects.filter(reason="shadow").values_list("case_id", flat=True)
                  ) == sorted(waiting + later)
    assert not InferenceClaim.objects.exists()  # released once routed


def test_two_answers_to_one_task_at_once_store_one_review_and_one_decision(enqueue, reviewer):
    enqueue()
    task = review_claim_next(reviewer=reviewer)

    def submit(answer: str):
        return review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                             answer=answer)

    results, errors = run_at_once(lambda: submit("3"), lambda: submit("5"))

    stored = [review for review in results if review is not None]
    assert len(stored) == 1 and len(errors) == 1
    assert isinstance(errors[0], Conflict), errors
    assert "already been answered" in errors[0].message
    review = Review.objects.get()
    assert (review.pk, review.task_id, review.answer) == (stored[0].pk, task.pk,
                                                          stored[0].answer)
    decision = Decision.objects.get()
    assert (decision.case_id, decision.label, decision.review_id) == (task.case_id,
                                                                      review.answer, review.pk)
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.DONE
    assert Case.objects.get(pk=task.case_id).status == Case.Status.DECIDED
