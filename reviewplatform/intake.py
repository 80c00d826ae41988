"""Intake: a submitted case is stored, and its prediction queued once the row is committed
(a batch's cases: one job for them all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from .models import Case, Deployment
from .services import case_submit
from .tasks import predict_case, predict_cases

# Queueing a prediction after the commit tries once more at once, then gives up: the case row
# is stored, and beat's sweep (`cases_requeue_stale`) queues it once the broker is back. A
# broker that is down must not hold every submit for Celery's default retries.
QUEUE_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.1,
                      "interval_max": 0.1}


def case_intake(
    *,
    deployment: Deployment,
    region_code: str,
    image: UploadedFile,
    captured_at: datetime,
    external_id: str,
    submitted_by: User,
    metadata: Any = None,
) -> Case:
    """Store a submitted case (validated by `case_submit`) and queue its prediction once the
    row is committed. Should its transaction fail once the case is stored (at its commit), its
    image is deleted (`case_submit`)."""
    def queue(case: Case) -> None:
        transaction.on_commit(lambda: predict_case.apply_async(
            (case.pk,), retry_policy=QUEUE_RETRY_POLICY), robust=True)

    return case_submit(deployment=deployment, region_code=region_code, image=image,
                       captured_at=captured_at, external_id=external_id,
                       submitted_by=submitted_by, metadata=metadata, on_stored=queue)


def predictions_queue(*, cases: Sequence[Case]) -> None:
    """Queue the prediction of cases stored together (a batch, each by `case_submit`) once
    the current transaction commits: one job for them all, since a job predicts every waiting
    case anyway (`predict_cases`)."""
    case_ids = [case.pk for case in cases]
    if case_ids:
        transaction.on_commit(lambda: predict_cases.apply_async(
            (case_ids,), retry_policy=QUEUE_RETRY_POLICY), robust=True)
