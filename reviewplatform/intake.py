"""Intake: a submitted case is stored, and its prediction queued once the row is committed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from .models import Case, Deployment
from .services import case_images_deleted_on_error, case_submit
from .tasks import predict_case


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
    """Store a submitted case (validated by `case_submit`) and queue its prediction. Should
    the transaction fail once the case is stored (at its commit), its image is deleted."""
    with case_images_deleted_on_error([]) as stored, transaction.atomic():
        case = case_submit(deployment=deployment, region_code=region_code, image=image,
                           captured_at=captured_at, external_id=external_id,
                           submitted_by=submitted_by, metadata=metadata)
        stored.append(case)
        transaction.on_commit(lambda: predict_case.delay(case.pk), robust=True)
    return case
