"""Writes for deployments, API keys, cases and reviews. Every state change goes through here."""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .authentication import api_key_hash
from .errors import Conflict, NotFound, ServiceError
from .images import image_inspect
from .models import ApiKey, Case, Decision, Deployment, Region, Review, ReviewTask

logger = logging.getLogger(__name__)


def deployment_create(
    *,
    slug: str,
    name: str,
    labels: list[str],
    regions: Iterable[tuple[str, str, str]],
    actor: User | None,
) -> Deployment:
    """Create a deployment with its regions (code, name, time zone), in the shadow stage."""
    from rollout.services import policy_publish

    with transaction.atomic():
        deployment = Deployment(slug=slug, name=name, labels=labels)
        deployment.full_clean()
        deployment.save()
        for code, region_name, tz in regions:
            region = Region(deployment=deployment, code=code, name=region_name, timezone=tz)
            region.full_clean()
            region.save()
        policy_publish(deployment=deployment, stage="shadow", rules=[], actor=actor,
                       reason="deployment created: the model starts in shadow mode")
    return deployment


def api_key_create(*, user: User, name: str) -> tuple[ApiKey, str]:
    """Create an API key; the secret is returned once and only its hash is kept."""
    prefix = secrets.token_hex(4)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(user=user, name=name, prefix=prefix,
                                    hashed_key=api_key_hash(key))
    return api_key, key


def case_submit(
    *,
    deployment: Deployment,
    region_code: str,
    image: UploadedFile,
    captured_at: datetime,
    external_id: str,
    submitted_by: User,
    metadata: dict | None = None,
) -> Case:
    """Validate and store a case; its prediction is queued once the row is committed."""
    from inference.tasks import predict_case

    if timezone.is_naive(captured_at):
        raise ServiceError("captured_at needs a UTC offset, e.g. 2026-05-01T21:30:00+02:00",
                           field="captured_at")
    region = deployment.regions.filter(code=region_code).first()
    if region is None:
        known = ", ".join(deployment.regions.values_list("code", flat=True))
        raise ServiceError(f"unknown region {region_code!r} for deployment {deployment.slug} "
                           f"(known: {known})", field="region")
    if not external_id.strip():
        raise ServiceError("external_id must not be blank", field="external_id")
    existing = Case.objects.filter(deployment=deployment, external_id=external_id).first()
    if existing is not None:
        raise Conflict(f"a case with external_id {external_id!r} already exists "
                       f"(case {existing.pk})", field="external_id")
    facts = image_inspect(image, size=image.size or 0)

    case = Case(deployment=deployment, region=region, external_id=external_id,
                captured_at=captured_at, metadata=metadata or {}, submitted_by=submitted_by,
                image_sha256=facts.sha256, width=facts.width, height=facts.height)
    case.image.save(f"{facts.sha256[:32]}.{facts.format.lower()}", image, save=False)
    try:
        with transaction.atomic():
            case.save()
            transaction.on_commit(lambda: predict_case.delay(case.pk), robust=True)
    except IntegrityError as exc:
        case.image.delete(save=False)
        raise Conflict(f"a case with external_id {external_id!r} already exists",
                       field="external_id") from exc
    logger.info("case %s submitted to %s/%s", case.pk, deployment.slug, region.code)
    return case


def _claimable(now: datetime) -> Q:
    """Open tasks, and claimed ones whose lease has passed: expired leases return by themselves."""
    return Q(status=ReviewTask.Status.OPEN) | Q(status=ReviewTask.Status.CLAIMED,
                                                lease_expires_at__lt=now)


def review_claim_next(
    *, reviewer: User, skipped: Iterable[int] = (), now: datetime | None = None
) -> ReviewTask | None:
    """Hand the reviewer the next task under a fresh lease, or None when the queue is empty.

    A task the reviewer already holds is handed back first (a reloaded page keeps its case).
    Cases the reviewer already answered are never handed to them again; tasks they skipped
    (`skipped`, task ids) come last.
    """
    now = now or timezone.now()
    lease = timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
    with transaction.atomic():
        task = (ReviewTask.objects.select_for_update(of=("self",))
                .filter(status=ReviewTask.Status.CLAIMED, claimed_by=reviewer,
                        lease_expires_at__gte=now)
                .order_by("claimed_at").first())
        if task is None:
            candidates = (ReviewTask.objects.select_for_update(skip_locked=True, of=("self",))
                    .filter(_claimable(now))
                    .exclude(case__reviews__reviewer=reviewer)
                    .order_by("-priority", "created_at", "id"))
            skipped = list(skipped)
            task = candidates.exclude(id__in=skipped).first() or candidates.first()
            if task is None:
                return None
            task.claimed_at = now
            task.lease_token = uuid.uuid4()
        task.status = ReviewTask.Status.CLAIMED
        task.claimed_by = reviewer  # type: ignore[assignment]
        task.lease_expires_at = now + lease
        task.save(update_fields=["status", "claimed_by", "claimed_at", "lease_token",
                                 "lease_expires_at"])
    return task


def _task_for_holder(*, task_id: int, lease_token: uuid.UUID, reviewer: User
                     ) -> ReviewTask:
    """Lock the task and check that the reviewer still holds its lease (the fencing token)."""
    task = (ReviewTask.objects.select_for_update(of=("self",))
            .select_related("case__deployment").filter(id=task_id).first())
    if task is None:
        raise NotFound(f"review task {task_id} does not exist")
    if task.status == ReviewTask.Status.DONE:
        raise Conflict("this case has already been answered")
    if (task.status != ReviewTask.Status.CLAIMED or task.claimed_by_id != reviewer.pk
            or task.lease_token != lease_token):
        raise Conflict("your lease on this case has passed to another reviewer; "
                       "your answer was not stored")
    return task


def review_submit(
    *,
    task_id: int,
    lease_token: uuid.UUID,
    reviewer: User,
    answer: str,
    mode: str = Review.Mode.BLIND,
    now: datetime | None = None,
) -> Review:
    """Store a reviewer's answer and, unless the case already has one, its Decision."""
    now = now or timezone.now()
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer)
        case = task.case
        allowed = [*case.deployment.labels, Review.CANNOT_TELL, Review.OUT_OF_DOMAIN]
        if answer not in allowed:
            raise ServiceError(f"answer {answer!r} is not one of {', '.join(allowed)}",
                               field="answer")
        if mode not in Review.Mode.values:
            raise ServiceError(f"unknown review mode {mode!r}", field="mode")
        claimed_at = task.claimed_at or now
        review = Review.objects.create(task=task, case=case, reviewer=reviewer, answer=answer,
                                       mode=mode,
                                       seconds=max(0.0, (now - claimed_at).total_seconds()))
        task.status = ReviewTask.Status.DONE
        task.completed_at = now
        task.lease_expires_at = None
        task.save(update_fields=["status", "completed_at", "lease_expires_at"])
        if not Decision.objects.filter(case=case).exists():
            Decision.objects.create(case=case, label=answer, source=Decision.Source.HUMAN,
                                    policy_version=task.policy_version, rule=task.rule,
                                    review=review)
            Case.objects.filter(pk=case.pk).update(status=Case.Status.DECIDED, updated_at=now)
    return review


def review_release(*, task_id: int, lease_token: uuid.UUID, reviewer: User) -> None:
    """Give a claimed task back to the queue at once (skip)."""
    with transaction.atomic():
        task = _task_for_holder(task_id=task_id, lease_token=lease_token, reviewer=reviewer)
        task.status = ReviewTask.Status.OPEN
        task.claimed_by = None
        task.claimed_at = None
        task.lease_token = None
        task.lease_expires_at = None
        task.save(update_fields=["status", "claimed_by", "claimed_at", "lease_token",
                                 "lease_expires_at"])
