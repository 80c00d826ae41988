"""Celery tasks of a case's journey: a thin interface that takes ids and calls the pipeline."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from celery import shared_task
from celery.signals import worker_init
from django.conf import settings
from django.core.cache import cache, caches
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from inference.reference import reference_detectors_fit as detectors_fit
from inference.reference import reference_sets_fill as reference_sets_make
from inference.selectors import FAILING_WINDOW, last_prediction_at, versions_failing
from inference.services import recently_routed
from review.services import pending_answers_store as answers_store
from rollout.alerts import admins_alert
from webhooks.delivery import drain

from . import pipeline
from .models import Case
from .selectors import cases_stuck
from .services.idempotency import idempotency_keys_expire as keys_expire
from .services.retention import case_images_expire as images_expire

logger = logging.getLogger(__name__)

# How long one job keeps taking batches: long enough to drain a burst in few jobs, short
# enough that a worker listening to several queues gets back to the others.
DRAIN_SECONDS = 10.0

# Set (shared cache) while a `predict_waiting` job is queued and has not begun to drain: the
# cases submitted meanwhile need no job of their own. Expires on its own, so that a lost job
# holds back the jobs of later cases for at most this long.
PREDICT_SOON_KEY = "predict-soon"
# Queueing a prediction after a submit's commit tries once more at once, then gives up: the
# case row is stored, and beat's sweep (`cases_requeue_stale`) queues it once the broker is
# back. A broker that is down must not hold every submit for Celery's default retries.
QUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                      "interval_max": 0.1}
PREDICT_SOON_SECONDS = 1


@shared_task(acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError, InterfaceError), max_retries=3,
             retry_backoff=True)
def predict_case(case_id: int) -> None:
    """A case is waiting: predict batches of waiting cases (this one among them, or already
    taken by another worker's batch) until none is left or a few seconds have passed.
    Idempotent by state, so a redelivered message after a crash is harmless; only database
    connection errors are retried, a bounded number of times.
    """
    if recently_routed(case_id):
        return
    _waiting_predict()
    webhooks_drain_soon()


@shared_task(acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError, InterfaceError), max_retries=3,
             retry_backoff=True)
def predict_waiting() -> None:
    """Cases are waiting (`predict_soon` asked): predict batches of them until none is left.

    The marker goes first, before any claim: a case committed after that asks for a job of
    its own, and one committed before it is seen by this job's claims, so no case is left
    without a job. Should the drain stop at its time limit with cases still waiting, this job
    asks for another. Idempotent by state, as `predict_case`.
    """
    caches["shared"].delete(PREDICT_SOON_KEY)
    if not _waiting_predict():
        predict_waiting.delay()
    webhooks_drain_soon()


def predict_soon() -> None:
    """Ask for a `predict_waiting` job once the current transaction commits, unless one is
    queued and has not begun yet (its drain will take the committed case): a burst of submits
    makes one job, not one per case. A cache or broker that cannot be reached leaves the case
    to beat's sweep (`cases_requeue_stale`).

    The marker is in the cache the web processes and the workers share (`shared`, Redis):
    one that only this process saw would hold back the jobs of later cases until it expires.
    """
    def ask() -> None:
        if caches["shared"].add(PREDICT_SOON_KEY, True, timeout=PREDICT_SOON_SECONDS):
            predict_waiting.apply_async(retry_policy=QUEUE_RETRY_POLICY)
    transaction.on_commit(ask, robust=True)


@shared_task(acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError, InterfaceError), max_retries=3,
             retry_backoff=True)
def predict_cases(case_ids: list[int]) -> None:
    """Cases stored together (a batch) are waiting: `predict_case` for them all, one job.
    Since no other job names them, should the drain stop at its time limit with some of them
    still waiting, those get a job again."""
    if all(recently_routed(case_id) for case_id in case_ids):
        return
    if not _waiting_predict():
        waiting = list(Case.objects.filter(pk__in=case_ids, status=Case.Status.RECEIVED)
                       .order_by("id").values_list("id", flat=True))
        if waiting:
            predict_cases.delay(waiting)
    webhooks_drain_soon()


def _waiting_predict() -> bool:
    """Predict batches of waiting cases until none is left (True) or DRAIN_SECONDS have
    passed (False)."""
    deadline = time.monotonic() + DRAIN_SECONDS
    while pipeline.predict_waiting():
        if time.monotonic() >= deadline:
            return False
    return True


@worker_init.connect
def predict_case_limits_set(**_: object) -> None:
    """A worker times the prediction jobs out after its own
    INFERENCE_TIME_LIMIT (soft: the failed prediction is stored) and 30 s later for good. Set
    in the worker only: Celery sends a task's limits along with each message, so limits given
    to the decorator would be those of the process that queued the job (the web server), and
    the worker's setting ignored."""
    for task in (predict_case, predict_cases, predict_waiting):
        task.soft_time_limit = settings.INFERENCE_TIME_LIMIT
        task.time_limit = settings.INFERENCE_TIME_LIMIT + 30


@shared_task
def cases_requeue_stale() -> int:
    """Re-queue cases whose prediction job vanished (broker restart, killed worker)."""
    cutoff = timezone.now() - timedelta(seconds=settings.PREDICTION_STALE_SECONDS)
    stale = list(Case.objects.filter(status=Case.Status.RECEIVED, updated_at__lt=cutoff)
                 .values_list("id", flat=True)[:1000])
    if stale:
        Case.objects.filter(id__in=stale).update(updated_at=timezone.now())
        for case_id in stale:
            predict_case.delay(case_id)
        logger.warning("re-queued %d cases whose prediction job was lost", len(stale))
    return len(stale)


@shared_task
def cases_stuck_check() -> int:
    """Tell the admins when cases have waited before routing longer than
    CASE_STUCK_ALERT_SECONDS (a deployment without a policy, a broker that lost its jobs and
    a worker that does not run: the alert says when a worker last predicted); at most once per
    CASE_STUCK_ALERT_REPEAT_SECONDS."""
    stuck = cases_stuck()
    if stuck.count and cache.add("cases-stuck-alerted", True,
                                 timeout=settings.CASE_STUCK_ALERT_REPEAT_SECONDS):
        minutes = settings.CASE_STUCK_ALERT_SECONDS / 60
        last = last_prediction_at()
        idle = last is None or last < timezone.now() - timedelta(
            seconds=settings.CASE_STUCK_ALERT_SECONDS)
        if last is None:
            workers = "No worker has stored a prediction yet: is a worker running?"
        elif idle:
            workers = (f"No worker has predicted since {last:%Y-%m-%d %H:%M} UTC: check that "
                       "a worker runs and reaches the broker.")
        else:
            workers = (f"A worker predicted at {last:%Y-%m-%d %H:%M} UTC: check the "
                       "deployment's policy and the worker's log.")
        subject = f"{stuck.count} case(s) waiting before routing for over {minutes:g} min"
        admins_alert(
            subject=subject + ("; no worker is predicting" if idle else ""),
            body=(f"{stuck.count} case(s) have not been routed for more than {minutes:g} "
                  f"minutes (oldest: case {stuck.oldest_id}, received "
                  f"{stuck.oldest_at:%Y-%m-%d %H:%M} UTC). By deployment: "
                  + ", ".join(f"{slug}: {n}" for slug, n in stuck.by_deployment.items())
                  + f". {workers}"),
            payload={"event": "cases_stuck", "count": stuck.count,
                     "by_deployment": stuck.by_deployment, "workers_idle": idle,
                     "last_prediction_at": last.isoformat() if last else None})
    return stuck.count


@shared_task
def models_failing_check() -> int:
    """Tell the admins of each active model version whose predictions failed lately (an
    artifact damaged on disk, a learner that no longer loads, time-outs): its cases go to
    reviewers meanwhile. At most once per version per CASE_STUCK_ALERT_REPEAT_SECONDS."""
    failing = versions_failing()
    for f in failing:
        version = f.version
        if not cache.add(f"model-failing-alerted:{version.pk}", True,
                         timeout=settings.CASE_STUCK_ALERT_REPEAT_SECONDS):
            continue
        role = "champion" if version.is_champion else "challenger"
        minutes = FAILING_WINDOW.total_seconds() / 60
        admins_alert(
            subject=(f"model version {version.name} ({role}) of {version.deployment.name} is "
                     f"failing: {f.failed} of {f.n} predictions in {minutes:g} min"),
            body=(f"{f.failed} of the {f.n} predictions of model version {version.name} "
                  f"({role}, deployment {version.deployment.slug}) in the last {minutes:g} "
                  f"minutes failed; the cases it could not predict went to reviewers "
                  f"(reason: model_failed). Last reason: {f.last_error}"),
            payload={"event": "model_failing", "deployment": version.deployment.slug,
                     "model_version": version.name, "champion": version.is_champion,
                     "failed": f.failed, "predictions": f.n, "last_error": f.last_error})
    return len(failing)


@shared_task
def reference_sets_fill() -> int:
    """Reference sets for champions registered without one, from reviewed cases."""
    made = reference_sets_make(size=settings.REFERENCE_FROM_REVIEWS)
    for reference in made:
        logger.info("reference set of %d reviewed cases for %s", reference.size,
                    reference.model_version)
    return len(made)


@shared_task
def reference_detectors_fit() -> int:
    """Out-of-domain detectors for reference sets without one for their version's artifact
    (sets made from reviews, sets stored before detectors, a changed artifact)."""
    return len(detectors_fit())


@shared_task
def case_images_expire() -> int:
    """Delete case images past their deployment's retention (beat, every hour)."""
    return images_expire()


@shared_task
def idempotency_keys_expire() -> int:
    """Forget the Idempotency-Keys older than IDEMPOTENCY_KEY_HOURS."""
    return keys_expire()


@shared_task
def webhooks_drain() -> int:
    """Send the webhooks that are due (beat runs this every WEBHOOK_DRAIN_SECONDS; a change
    that wrote events asks for it sooner). Tells the admins of deliveries that failed for good.
    """
    result = drain()
    if result.failed:
        admins_alert(
            subject=f"{len(result.failed)} webhook delivery(ies) failed for good",
            body=(f"{len(result.failed)} webhook delivery(ies) were not accepted by their "
                  f"endpoint within {settings.WEBHOOK_RETRY_HOURS} hours of retries, or the "
                  "endpoint answered 410 Gone. Their owners can read the delivery log and "
                  "send them again (POST /api/v1/webhooks/{id}/deliveries/{id}/redeliver/). "
                  f"Deliveries: {', '.join(map(str, result.failed[:20]))}."),
            payload={"event": "webhook_deliveries_failed", "deliveries": result.failed})
    return result.sent


@shared_task
def pending_answers_store(task_ids: list[int] | None = None) -> int:
    """Store the review page's answers whose undo window has closed (`review.pending`): those
    of `task_ids`, queued for the end of their window, or every due one (beat, every few
    seconds, in case such a job was lost)."""
    stored = answers_store(now=timezone.now(), task_ids=task_ids)
    if stored:
        webhooks_drain_soon()
    return stored


def pending_answers_store_at(until: datetime, *, task_id: int) -> None:
    """Ask for the answer on `task_id` to be stored when its undo window closes, once the
    current transaction commits. A broker that cannot be reached leaves it to beat."""
    def ask() -> None:
        pending_answers_store.apply_async(kwargs={"task_ids": [task_id]}, eta=until)
    transaction.on_commit(ask, robust=True)


def webhooks_drain_soon() -> None:
    """Ask for a drain once the current transaction commits, rather than at the next beat; at
    most once a second. A broker that cannot be reached only leaves it to beat."""
    def ask() -> None:
        if cache.add("webhooks-drain-asked", True, timeout=1):
            webhooks_drain.delay()
    transaction.on_commit(ask, robust=True)
