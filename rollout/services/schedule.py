"""Scheduled policy changes: stored now, published when due if their evidence gate passes then."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from reviewplatform.errors import NotFound, ServiceError
from reviewplatform.models import Deployment
from reviewplatform.nul import nul_refuse

from .. import scope
from ..alerts import admins_alert
from ..evidence import evidence_for
from ..models import ChangeKind, ScheduledChange
from ..selectors import policy_current
from .policy import policy_publish, policy_spec_validate


def policy_schedule(
    *,
    deployment: Deployment,
    actor: User | None,
    reason: str,
    effective_at: datetime,
    stage: str,
    rules: Any,
    confidence_threshold: Any,
    audit_rate: Any,
    guardrails: Any = None,
    now: datetime | None = None,
) -> ScheduledChange:
    """Store a policy to publish at `effective_at`, once its evidence gate passes then."""
    now = now or timezone.now()
    if timezone.is_naive(effective_at):
        raise ServiceError("effective_at needs a UTC offset", field="effective_at")
    if effective_at <= now:
        raise ServiceError("effective_at must be in the future", field="effective_at")
    if not reason.strip():
        raise ServiceError("a policy change needs a reason", field="reason")
    nul_refuse(reason, field="reason")
    current = policy_current(deployment_id=deployment.pk)
    spec = policy_spec_validate(
        deployment=deployment, stage=stage, rules=rules,
        confidence_threshold=confidence_threshold, audit_rate=audit_rate,
        guardrails=current.guardrails if guardrails is None else guardrails)
    return ScheduledChange.objects.create(
        deployment=deployment, effective_at=effective_at, stage=spec["stage"],
        rules=spec["rules"], confidence_threshold=spec["confidence_threshold"],
        audit_rate=spec["audit_rate"], guardrails=spec["guardrails"], author=actor,
        reason=reason.strip())


def policy_schedule_cancel(*, change_id: int, deployment: Deployment, actor: User | None
                           ) -> ScheduledChange:
    updated = (ScheduledChange.objects
               .filter(pk=change_id, deployment=deployment,
                       status=ScheduledChange.Status.PENDING)
               .update(status=ScheduledChange.Status.CANCELLED,
                       status_note=f"cancelled by {actor or 'system'}"))
    if updated != 1:
        raise NotFound(f"no pending scheduled change {change_id}", field="change")
    return ScheduledChange.objects.get(pk=change_id)


def _held_alert(change: ScheduledChange) -> Callable[[], None]:
    slug, note, change_id = change.deployment.slug, change.status_note, change.pk

    def send() -> None:
        admins_alert(subject=f"{slug}: scheduled policy change held",
                     body=f"The scheduled change {change_id} of {slug} was not published. {note}",
                     payload={"event": "scheduled_change_held", "deployment": slug,
                              "scheduled_change": change_id, "note": note})
    return send


def scheduled_changes_apply(*, now: datetime | None = None) -> list[ScheduledChange]:
    """Publish every due scheduled change whose evidence gate passes now; hold the others.

    Idempotent by state: a change leaves `pending` under its row lock, once.
    """
    now = now or timezone.now()
    done: list[ScheduledChange] = []
    due = list(ScheduledChange.objects.filter(status=ScheduledChange.Status.PENDING,
                                              effective_at__lte=now)
               .values_list("pk", flat=True))
    for change_id in due:
        with transaction.atomic():
            change = (ScheduledChange.objects.select_for_update()
                      .select_related("deployment")
                      .filter(pk=change_id, status=ScheduledChange.Status.PENDING).first())
            if change is None:
                continue
            current = policy_current(deployment_id=change.deployment_id).spec()
            spec = {"stage": change.stage, "rules": change.rules,
                    "confidence_threshold": change.confidence_threshold,
                    "audit_rate": change.audit_rate, "guardrails": change.guardrails}
            # The pauses in force when it falls due, carried over as any publish carries them.
            spec["paused_cells"] = scope.pauses_carry(current, spec)
            evidence = evidence_for(deployment=change.deployment, current=current,
                                    proposed=spec, now=now)
            if evidence.passes:
                version = policy_publish(
                    deployment=change.deployment, stage=change.stage, rules=change.rules,
                    actor=change.author,
                    reason=f"scheduled for {change.effective_at:%Y-%m-%d %H:%M} UTC: "
                           f"{change.reason}",
                    confidence_threshold=change.confidence_threshold,
                    audit_rate=change.audit_rate, guardrails=change.guardrails,
                    kind=ChangeKind.SCHEDULED,
                    evidence=evidence.as_dict())
                change.status = ScheduledChange.Status.PUBLISHED
                change.published_version = version
                change.status_note = f"published as version {version.version}"
            else:
                change.status = ScheduledChange.Status.HELD
                change.status_note = f"held: {evidence.gate_reason}"
                transaction.on_commit(_held_alert(change))
            change.save(update_fields=["status", "status_note", "published_version"])
            done.append(change)
    return done
