"""Reads for cases and the review queue."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db.models import Count, Q
from django.utils import timezone

from .models import Case, Review, ReviewTask


def case_get_for(*, case_id: int, user: User) -> Case | None:
    """A case the user may read: one they submitted, or any with the view permission."""
    cases = Case.objects.select_related("deployment", "region", "decision")
    if not user.has_perm("reviewplatform.view_case"):
        cases = cases.filter(submitted_by=user)
    return cases.filter(pk=case_id).first()


def queue_counts() -> list[dict[str, Any]]:
    """Tasks waiting for a human, by deployment and reason (claimed ones included)."""
    rows = (ReviewTask.objects.exclude(status=ReviewTask.Status.DONE)
                .values("case__deployment__slug", "reason")
                .annotate(waiting=Count("id", filter=Q(status=ReviewTask.Status.OPEN)),
                          claimed=Count("id", filter=Q(status=ReviewTask.Status.CLAIMED)))
                .order_by("case__deployment__slug", "reason"))
    return [dict(row) for row in rows]


def reviewer_count_today(*, reviewer: User) -> int:
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Review.objects.filter(reviewer=reviewer, created_at__gte=start).count()
