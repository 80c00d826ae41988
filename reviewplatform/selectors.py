"""Reads for cases. The database counts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.utils import timezone

from .models import Case, Deployment, ReviewTask


def cases_visible_to(*, user: User) -> QuerySet[Case]:
    """The cases a user may read with their decisions: those they submitted, or every case
    for those who may see decisions (rollout admins, superusers). Not every case for a
    reviewer: a decision shows the model's answer, which blind review hides. A case outside
    this set is answered as if it did not exist."""
    if user.has_perm("reviewplatform.view_decision"):
        return Case.objects.all()
    return Case.objects.filter(submitted_by=user)


@dataclass(frozen=True)
class Stuck:
    """Cases waiting before routing for longer than CASE_STUCK_ALERT_SECONDS."""

    count: int
    oldest_id: int | None
    oldest_at: datetime | None
    by_deployment: dict[str, int]


def cases_stuck(*, now: datetime | None = None) -> Stuck:
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.CASE_STUCK_ALERT_SECONDS)
    waiting: QuerySet[Case] = Case.objects.filter(status=Case.Status.RECEIVED,
                                                 created_at__lt=cutoff)
    by_deployment = dict(waiting.order_by().values_list("deployment__slug")
                         .annotate(n=Count("id")).values_list("deployment__slug", "n"))
    oldest = waiting.order_by("created_at", "id").values("id", "created_at").first()
    return Stuck(count=sum(by_deployment.values()),
                 oldest_id=oldest["id"] if oldest else None,
                 oldest_at=oldest["created_at"] if oldest else None,
                 by_deployment=by_deployment)


@dataclass(frozen=True)
class AuditWait:
    """How long the oldest open audit task of a deployment has waited (None: none waits)."""

    deployment_id: int
    slug: str
    seconds: float | None
    overdue: bool

    @property
    def minutes(self) -> int | None:
        return None if self.seconds is None else int(self.seconds // 60)


def audits_waiting(*, now: datetime | None = None) -> list[AuditWait]:
    """Each deployment's oldest open audit task, by slug: one statement, each deployment's
    oldest found down the partial index `reviewtask_audit_open`. `overdue`: it has waited
    longer than `AUDIT_SERVE_WITHIN_SECONDS`, so the next claim serves it first."""
    now = now or timezone.now()
    oldest = (ReviewTask.objects.filter(case__deployment=OuterRef("pk"),
                                        status=ReviewTask.Status.OPEN,
                                        reason=ReviewTask.Reason.AUDIT)
              .order_by("created_at", "id").values("created_at")[:1])
    rows = (Deployment.objects.annotate(oldest=Subquery(oldest)).order_by("slug")
            .values_list("pk", "slug", "oldest"))
    within = settings.AUDIT_SERVE_WITHIN_SECONDS
    waits = []
    for pk, slug, first in rows:
        seconds = None if first is None else max((now - first).total_seconds(), 0.0)
        waits.append(AuditWait(deployment_id=pk, slug=slug, seconds=seconds,
                               overdue=seconds is not None and seconds > within))
    return waits
