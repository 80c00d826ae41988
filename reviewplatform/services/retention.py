"""Retention: a deployment's case images are deleted a set number of days after the decision.

Only the image goes. The case row (with the image's SHA-256, size and capture time), its
predictions, decision, reviews and every report figure stay: they are the audit record and the
statistics. Images still needed are kept: those of cases not decided yet, with a review task
still open (an audit, a second opinion), or marked gold (reviewers are served them).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..models import Case, Deployment, GoldCase, ReviewTask

logger = logging.getLogger(__name__)


def case_images_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """Delete the images past their deployment's retention, at most `limit` per deployment;
    returns how many. The rows are marked in one short transaction per deployment (rows another
    run holds are skipped), and the files are deleted after it commits: a crash between the two
    leaves a file no row points to, never a row pointing to a missing file it claims to have."""
    now = now or timezone.now()
    expired = 0
    for deployment in Deployment.objects.filter(image_retention_days__isnull=False):
        expired += _expire(deployment, now - timedelta(days=deployment.image_retention_days or 0),
                           now=now, limit=limit)
    return expired


def _expire(deployment: Deployment, cutoff: datetime, *, now: datetime, limit: int) -> int:
    still_needed = (ReviewTask.objects.filter(case=OuterRef("pk"))
                    .exclude(status=ReviewTask.Status.DONE))
    with transaction.atomic():
        cases = list(Case.objects.select_for_update(skip_locked=True, of=("self",))
                     .filter(deployment=deployment, status=Case.Status.DECIDED,
                             image_deleted_at__isnull=True, decision__decided_at__lt=cutoff)
                     .exclude(Exists(still_needed))
                     .exclude(Exists(GoldCase.objects.filter(case=OuterRef("pk"))))
                     .order_by("pk")[:limit])
        if not cases:
            return 0
        names = [case.image.name for case in cases if case.image.name]
        Case.objects.filter(pk__in=[case.pk for case in cases]).update(
            image="", image_deleted_at=now, updated_at=now)
        transaction.on_commit(lambda: _files_delete(names))
    logger.info("%s: deleted %d case images decided before %s under retention",
                deployment.slug, len(cases), cutoff.isoformat())
    return len(cases)


def _files_delete(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError:
            logger.exception("case image %s could not be deleted; its row says it was", name)
