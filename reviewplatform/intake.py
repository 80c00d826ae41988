"""Intake: a submitted case is stored, and its prediction asked for once the row is committed
(one job for a burst of submits; a batch's cases: one job for them all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from .models import Case, Deployment
from .services import case_submit
from .tasks import QUEUE_RETRY_POLICY, predict_cases, predict_soon


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
    """Store a submitted case (validated by `case_submit`) and ask for its prediction once the
    row is committed (`predict_soon`: a job already queued takes it). Should its transaction
    fail once the case is stored (at its commit), its image is deleted (`case_submit`)."""
    return case_submit(deployment=deployment, region_code=region_code, image=image,
                       captured_at=captured_at, external_id=external_id,
                       submitted_by=submitted_by, metadata=metadata,
                       on_stored=lambda case: predict_soon())


def predictions_queue(*, cases: Sequence[Case]) -> None:
    """Queue the prediction of cases stored together (a batch, each by `case_submit`) once
    the current transaction commits: one job for them all, since a job predicts every waiting
    case anyway (`predict_cases`)."""
    case_ids = [case.pk for case in cases]
    if case_ids:
        transaction.on_commit(lambda: predict_cases.apply_async(
            (case_ids,), retry_policy=QUEUE_RETRY_POLICY), robust=True)
