"""Celery tasks: a thin interface that takes ids and calls services."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from reviewplatform.models import Case

from . import services

logger = logging.getLogger(__name__)

# How long one job keeps taking batches: long enough to drain a burst in few jobs, short
# enough that a worker listening to several queues gets back to the others.
DRAIN_SECONDS = 10.0


@shared_task(acks_late=True, reject_on_worker_lost=True,
             autoretry_for=(OperationalError, InterfaceError), max_retries=3,
             retry_backoff=True, soft_time_limit=settings.INFERENCE_TIME_LIMIT,
             time_limit=settings.INFERENCE_TIME_LIMIT + 30)
def predict_case(case_id: int) -> None:
    """A case is waiting: predict batches of waiting cases (this one among them, or already
    taken by another worker's batch) until none is left or a few seconds have passed.
    Idempotent by state, so a redelivered message after a crash is harmless; only database
    connection errors are retried, a bounded number of times.
    """
    if services.recently_routed(case_id):
        return
    deadline = time.monotonic() + DRAIN_SECONDS
    while services.predict_waiting() and time.monotonic() < deadline:
        pass


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
