"""Soak: several HTTP clients submit cases for a few minutes while simulated reviewers (the
rollout simulator's reviewers) answer through the review services; halfway through, the worker
is killed and Redis restarted at the same moment. At the end the counts reconcile exactly, every
decision reached the client's webhook receiver once, and the guardrail and report figures equal
a recount from the rows."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from django.db import connection
from django.db.models import OuterRef, Subquery

from inference.models import Prediction
from review.services import review_claim_next, review_submit
from reviewplatform.models import Case, CaseEvent, Review, ReviewTask
from reviewplatform.simulation.reviewers import SimulatedReviewer, simulated_user
from reviewplatform.simulation.scenario import ReviewerPool
from rollout.guardrails import guardrails_check
from rollout.reports.rollup import rollup_fold
from rollout.reports.selectors import report_build
from tests.report_oracle import report_build_live
from tests.test_reports_rollup import same
from tests.test_reports_selectors import filters
from tests.webhook_receiver import Receiver
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

from .platform import Clients
from .reconcile import reconcile

pytestmark = pytest.mark.faults
SECONDS = float(os.environ.get("FAULTS_SOAK_SECONDS", "100"))
RATE = 6.0
CLIENTS = 4
REGIONS = ("north", "east", "west")
POOL = ReviewerPool(name="soak", count=3, accuracy=0.9, seconds=(0.05, 0.2), hours=(0, 24),
                    timezone="UTC", senior=True, start_day=0, end_day=None)


def reviewers_work(stop: threading.Event, truths: dict[int, str], labels: list[str],
                   answered: list[int]) -> list[threading.Thread]:
    """The pool's reviewers, each a thread: claim the next task, take their time, answer
    (right with the pool's accuracy), until told to stop."""
    def work(reviewer: SimulatedReviewer) -> None:
        try:
            while not stop.is_set():
                task = review_claim_next(reviewer=reviewer.user)
                if task is None:
                    stop.wait(0.5)
                    continue
                time.sleep(reviewer.seconds())
                truth = truths.get(task.case_id)
                review_submit(task_id=task.pk, lease_token=task.lease_token,
                              reviewer=reviewer.user, answer=reviewer.answer(truth, labels))
                answered.append(task.pk)
        finally:
            connection.close()

    reviewers = [SimulatedReviewer(
        user=simulated_user(f"sim-reviewer-{n}", groups=["reviewer", "senior reviewer"],
                            role=f"reviewer {n} (soak)"),
        pool=POOL, rng=random.Random(f"soak:{n}")) for n in range(1, POOL.count + 1)]
    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in reviewers]
    for thread in threads:
        thread.start()
    return threads


def guardrail_recount(deployment, cell) -> tuple[int, int]:
    """The cell's agreement from the rows, another way: each human answer to a case the model
    decided (an audit) or would have (shadow), compared with the model's answer in Python."""
    champion = Prediction.objects.champion().filter(case=OuterRef("case")).values("label")[:1]
    reviews = (Review.objects.filter(task__policy_version__deployment=deployment,
                                     task__rule=cell.rule, case__region__code=cell.region,
                                     task__reason__in=["shadow", "audit"])
               .annotate(champion_label=Subquery(champion))
               .select_related("task", "case__decision"))
    if cell.since is not None:
        reviews = reviews.filter(created_at__gte=cell.since)
    n = agreed = 0
    for review in reviews:
        if review.answer == Review.CANNOT_TELL:
            continue
        model = (review.case.decision.label if review.task.reason == "audit"
                 else review.champion_label)
        n += 1
        agreed += review.answer == model
    return n, agreed


def test_a_soak_with_a_worker_and_a_redis_restart_reconciles_exactly(
        platform, redis_server, champion, challenger, model_decides, api_key, client_user,
        trained_model, faults_record):
    deployment = champion.deployment
    samples = sorted(trained_model.test_files)
    random.Random(0).shuffle(samples)
    images = [path.read_bytes() for path in samples]
    labels = [str(label) for label in deployment.labels]
    truths: dict[int, str] = {}
    with Receiver() as receiver:
        endpoint_create(owner=client_user, url=receiver.url("/hook"),
                        event_types=["case.decided"])
        platform.start("web", "worker", "webhooks", "beat")
        stop, answered = threading.Event(), []
        reviewers = reviewers_work(stop, truths, labels, answered)
        clients = Clients(url=platform.url, key=api_key, images=images, rate=RATE,
                          count=CLIENTS, prefix="soak", regions=REGIONS)
        with clients:
            started = time.monotonic()
            time.sleep(SECONDS / 2)
            # The worker dies and Redis restarts (its queue lost) at the same moment.
            platform.kill("worker", signal.SIGKILL)
            redis_server.stop()
            redis_server.start()
            platform.start("worker")
            restarted_at = time.monotonic() - started
            time.sleep(max(0.0, SECONDS - (time.monotonic() - started)))
        ids = clients.stored()
        assert not clients.others(), [(a.status, a.body[:200]) for a in clients.others()[:3]]
        for case_id, external_id in Case.objects.filter(external_id__in=ids).values_list(
                "id", "external_id"):
            _, number, k = external_id.split("-")
            truths[case_id] = samples[(int(k) * CLIENTS + int(number)) % len(samples)].parent.name

        deadline = time.monotonic() + 240
        waiting = Case.objects.filter(external_id__in=ids, status=Case.Status.RECEIVED)
        while waiting.exists():
            assert time.monotonic() < deadline, f"{waiting.count()} wait:\n{platform.logs()}"
            time.sleep(1)
        time.sleep(3)  # the reviewers answer what is open
        stop.set()
        for thread in reviewers:
            thread.join(timeout=30)
        undelivered = WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.SUCCEEDED)
        decided_events = CaseEvent.objects.filter(type=CaseEvent.Type.DECIDED)
        deadline = time.monotonic() + 120
        while (undelivered.exists()
               or WebhookDelivery.objects.count() < decided_events.count()):
            assert time.monotonic() < deadline, (
                f"{undelivered.count()} webhook deliveries not done:\n{platform.logs()}")
            time.sleep(1)
        accepted = [r.headers["webhook-id"] for r in receiver.requests]
    platform.stop()

    tally = faults_record(reconcile(
        fault="soak: clients, reviewers, worker and Redis restarted together",
        deployment=deployment, external_ids=ids,
        notes=[f"{SECONDS:.0f} s, {CLIENTS} clients at {RATE:g} cases/s, {POOL.count} "
               f"simulated reviewers ({len(answered)} answers); worker killed and Redis "
               f"restarted at {restarted_at:.0f} s; {len(accepted)} webhooks received, "
               f"{len(set(accepted))} distinct"]))
    assert tally.stored == len(ids) and tally.decided and answered
    events = {str(uid) for uid in decided_events.values_list("uid", flat=True)}
    assert sorted(accepted) == sorted(events)  # each decision told once, none lost

    # The guardrail's figures and the report equal a recount from the rows.
    cells = guardrails_check(deployment=deployment)
    assert cells
    for cell in cells:
        assert (cell.agreement.n, cell.agreement.k) == guardrail_recount(deployment, cell), cell
    assert sum(cell.agreement.n for cell in cells) > 0
    rollup_fold()
    f = filters(deployment)
    same(report_build_live(f), report_build(f))
    counts = report_build(f).counts
    assert counts == report_build_live(f).counts
    assert counts.cases == tally.stored and sum(counts.by_source.values()) == tally.decided
    assert ReviewTask.objects.filter(status=ReviewTask.Status.CLAIMED).count() <= POOL.count
