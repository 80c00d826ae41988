"""Writes for deployments, cases and gold cases (API keys: `api_keys`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import ImageField
from django.utils import timezone

from ..errors import Conflict, ServiceError
from ..images import image_inspect
from ..models import Case, Deployment, GoldCase, Region, Review
from ..nul import nul_where

logger = logging.getLogger(__name__)


def deployment_store(
    *,
    slug: str,
    name: str,
    labels: list[str],
    regions: Iterable[tuple[str, str, str]],
) -> Deployment:
    """Write a deployment's rows with its regions (code, name, time zone), validated.

    Only `rollout.services.deployment_create` calls this, in the transaction that publishes
    the deployment's first policy version: the database refuses a deployment without one.
    """
    deployment = Deployment(slug=slug, name=name, labels=labels)
    deployment.full_clean()
    deployment.save()
    for code, region_name, tz in regions:
        region = Region(deployment=deployment, code=code, name=region_name, timezone=tz)
        region.full_clean()
        region.save()
    return deployment


def case_submit(
    *,
    deployment: Deployment,
    region_code: str,
    image: UploadedFile,
    captured_at: datetime,
    external_id: str,
    submitted_by: User,
    metadata: Any = None,
    on_stored: Callable[[Case], None] | None = None,
) -> Case:
    """Validate and store a case (`reviewplatform.intake.case_intake` queues its prediction
    once the row is committed). Every check but the external_id's runs before the image is
    written, that one by the INSERT itself (the unique constraint): a refused case leaves
    neither a row nor a file, and neither does a crash once it is written.

    The row is written in a transaction of its own (a savepoint in the caller's), in which
    `on_stored(case)` runs last: should it fail, the row rolls back and the image goes.
    """
    case = case_prepare(deployment=deployment, region_code=region_code, image=image,
                        captured_at=captured_at, external_id=external_id,
                        submitted_by=submitted_by, metadata=metadata)
    with case_images_deleted_on_error([case]):
        try:
            with transaction.atomic():
                case.save()
                if on_stored is not None:
                    on_stored(case)
        except IntegrityError as exc:
            raise _conflict(case, exc) from exc
    logger.info("case %s submitted to %s/%s", case.pk, deployment.slug, case.region.code)
    return case


def case_prepare(
    *,
    deployment: Deployment,
    region_code: str,
    image: UploadedFile,
    captured_at: datetime,
    external_id: str,
    submitted_by: User,
    metadata: Any = None,
) -> Case:
    """`case_submit`'s checks, then the image written: the case, its row not written yet
    (`case_submit` writes it; a batch, `cases_insert`). Should its row not be written, its
    caller deletes the image (`case_images_deleted_on_error`)."""
    if timezone.is_naive(captured_at):
        raise ServiceError("captured_at needs a UTC offset, e.g. 2026-05-01T21:30:00+02:00",
                           field="captured_at")
    latest = timezone.now() + timedelta(seconds=settings.CAPTURED_AT_MAX_FUTURE_SECONDS)
    if captured_at > latest:
        raise ServiceError(f"captured_at {captured_at.isoformat()} is in the future (at most "
                           f"{settings.CAPTURED_AT_MAX_FUTURE_SECONDS} seconds ahead of the "
                           f"platform's clock are accepted)", field="captured_at")
    metadata = case_metadata_check(metadata)
    # `.all()`: the regions read with the API key's deployments, when they were.
    regions = deployment.regions.all()
    region = next((r for r in regions if r.code == region_code), None)
    if region is None:
        known = ", ".join(sorted(r.code for r in regions))
        raise ServiceError(f"unknown region {region_code!r} for deployment {deployment.slug} "
                           f"(known: {known})", field="region")
    if not external_id.strip():
        raise ServiceError("external_id must not be blank", field="external_id")
    limit = Case._meta.get_field("external_id").max_length or 0
    if len(external_id) > limit:
        raise ServiceError(f"external_id is {len(external_id)} characters long; the limit is "
                           f"{limit}", field="external_id")
    facts = image_inspect(image, size=image.size or 0)

    # The file is written before the case is made: assigning it to a case's ImageField would
    # open it again for the dimensions the case already has.
    field = cast(ImageField, Case._meta.get_field("image"))
    filename = f"{facts.sha256[:32]}.{facts.format.lower()}"
    # upload_to is a folder, not a function of the case: no instance is needed.
    name = field.storage.save(field.generate_filename(None, filename),  # type: ignore[arg-type]
                              image, max_length=field.max_length)
    return Case(deployment=deployment, region=region, external_id=external_id,
                captured_at=captured_at, metadata=metadata, submitted_by=submitted_by,
                image=name, image_sha256=facts.sha256, width=facts.width, height=facts.height)


def cases_insert(cases: Sequence[Case]) -> dict[int, Conflict]:
    """Write the rows of prepared cases (`case_prepare`) in the current transaction, in one
    INSERT; should the database refuse it (an external_id already used, or used twice among
    them), each in a savepoint of its own, in order. Returns the refusals by the case's place
    in `cases`; a refused case's image is deleted."""
    if not cases:
        return {}
    try:
        with transaction.atomic():
            Case.objects.bulk_create(cases)
    except IntegrityError:
        refused: dict[int, Conflict] = {}
        for index, case in enumerate(cases):
            try:
                with transaction.atomic():
                    case.save()
            except IntegrityError as exc:
                case.image.delete(save=False)
                refused[index] = _conflict(case, exc)
        cases = [case for index, case in enumerate(cases) if index not in refused]
    else:
        refused = {}
    for case in cases:
        logger.info("case %s submitted to %s/%s", case.pk, case.deployment.slug,
                    case.region.code)
    return refused


def _conflict(case: Case, error: IntegrityError) -> Conflict:
    """The refusal of a case whose INSERT failed: the unique constraint on (deployment,
    external_id) is the check (no read first), so the case it conflicts with is read now.
    Another constraint's error is raised as it is."""
    existing = Case.objects.filter(deployment_id=case.deployment_id,
                                   external_id=case.external_id).first()
    if existing is None:
        raise error
    conflict = Conflict(f"a case with external_id {case.external_id!r} already exists "
                        f"(case {existing.pk})", field="external_id")
    conflict.__cause__ = error
    return conflict


@contextmanager
def case_images_deleted_on_error(cases: list[Case]) -> Iterator[list[Case]]:
    """Delete the images of `cases`, as the list stands then, should the block raise: their
    rows roll back with the transaction, files on disk would stay behind.

    Django has no hook on rollback: wrap the whole transaction, its commit included, and
    append each case to the list once its image is written.
    """
    try:
        yield cases
    except BaseException:
        for case in cases:
            case.image.delete(save=False)
        raise


METADATA_NOT_AN_OBJECT = 'metadata must be a JSON object, e.g. {"camera": "camera-7"}'


def case_metadata_check(metadata: Any) -> dict[str, Any]:
    """A case's metadata: a JSON object (none given: empty) of at most CASE_METADATA_MAX_BYTES,
    measured as its compact UTF-8 JSON encoding, without a NUL character in any key or string
    (jsonb stores none)."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ServiceError(METADATA_NOT_AN_OBJECT, field="metadata")
    if nul_where(metadata) is not None:
        raise ServiceError("metadata may not contain NUL characters (\\u0000), in a key or "
                           "a string", field="metadata")
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > settings.CASE_METADATA_MAX_BYTES:
        raise ServiceError(f"metadata is {size} bytes as JSON; the limit is "
                           f"{settings.CASE_METADATA_MAX_BYTES}", field="metadata")
    return metadata


def case_gold_mark(*, case: Case, label: str, actor: User | None) -> GoldCase:
    """Mark a case as gold with its known answer (or change the answer of a gold case).

    Gold cases are mixed into reviewers' queues at the deployment's `gold_rate`, looking like
    any other case; each reviewer's answers on them measure their accuracy.
    """
    allowed = [*case.deployment.labels, Review.CANNOT_TELL, Review.OUT_OF_DOMAIN]
    if label not in allowed:
        raise ServiceError(f"gold answer {label!r} is not one of {', '.join(allowed)}",
                           field="label")
    gold, _ = GoldCase.objects.update_or_create(
        case=case, defaults={"label": label, "is_active": True, "marked_by": actor})
    logger.info("case %s marked gold (%s) by %s", case.pk, label, actor)
    return gold


def case_gold_unmark(*, case: Case) -> None:
    """Stop serving a gold case; the answers already given on it keep counting."""
    GoldCase.objects.filter(case=case).update(is_active=False)
