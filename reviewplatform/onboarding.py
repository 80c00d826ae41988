"""Onboarding a team's own model: from an exported fastai learner to a protected deployment.

One service behind the three ways in (the staff page, `manage.py deployment_create` and
`POST /api/v1/deployments/`): the deployment with its labels (read from the learner's
vocabulary, in an order of the team's choosing) and its regions with their time zones, its
first policy (the shadow stage), the learner registered as champion, a reference set whose
images fit the input limits, and an API key scoped to the deployment, shown once.

Everything slow (loading the learner, a probe prediction, decoding the reference images) runs
first, outside any transaction; everything written is written in one transaction, so a refusal
at any step leaves nothing behind.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import transaction

from inference.models import ModelVersion, ReferenceSet
from inference.reference import (
    reference_detectors_fit,
    reference_set_store,
    reference_zip_read,
)
from inference.services import domain_thresholds_fit, learner_check, model_version_register
from rollout.services import deployment_create

from .errors import Conflict, ServiceError
from .files import files_deleted_on_error
from .models import ApiKey, Deployment
from .services import api_key_create

SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,48}$")
API_CLIENT_ROLE = "api client"


@dataclass(frozen=True)
class RegionIn:
    code: str
    name: str
    timezone: str


@dataclass(frozen=True)
class Onboarded:
    deployment: Deployment
    champion: ModelVersion
    reference: ReferenceSet
    api_key: ApiKey
    #: the key itself: shown this once, only its hash is kept
    api_key_secret: str


def _labels_checked(vocab: list[str], labels: Sequence[str] | None) -> list[str]:
    if not labels:
        return list(vocab)
    labels = [label.strip() for label in labels]
    if sorted(labels) != sorted(vocab) or len(set(labels)) != len(labels):
        raise ServiceError(
            f"the labels must be the learner's own, each once, in any order: "
            f"{', '.join(vocab)}", field="labels")
    return labels


def _regions_checked(regions: Sequence[RegionIn]) -> list[tuple[str, str, str]]:
    if not regions:
        raise ServiceError("a deployment needs at least one region", field="regions")
    checked = []
    for region in regions:
        if not SLUG.match(region.code):
            raise ServiceError(f"region code {region.code!r}: lower-case letters, digits and "
                               "hyphens", field="regions")
        try:
            zoneinfo.ZoneInfo(region.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise ServiceError(f"region {region.code}: unknown time zone "
                               f"{region.timezone!r} (an IANA name such as Europe/Oslo)",
                               field="regions") from exc
        checked.append((region.code, region.name.strip() or region.code, region.timezone))
    codes = [code for code, _, _ in checked]
    if len(set(codes)) != len(codes):
        raise ServiceError("each region code may appear once", field="regions")
    return checked


def _client_check(username: str) -> User | None:
    """The API client account the key will act as, if it exists; None for a new one."""
    if not re.fullmatch(r"[\w.@+-]{1,150}", username):
        raise ServiceError("the client account name may hold letters, digits and @.+-_",
                           field="client")
    client = User.objects.filter(username=username).first()
    if client is not None and (client.is_staff
                               or not client.groups.filter(name=API_CLIENT_ROLE).exists()):
        raise ServiceError(f"{username} is not an API client account; name another or a new "
                           "one", field="client")
    return client


def _client_create(username: str) -> User:
    client = User.objects.create_user(username=username)
    client.set_unusable_password()
    client.save()
    client.groups.set(Group.objects.filter(name=API_CLIENT_ROLE))
    return client


def deployment_onboard(*, slug: str, name: str, learner: Path, regions: Sequence[RegionIn],
                       reference: IO[bytes], client: str, labels: Sequence[str] | None = None,
                       model_name: str = "v1", image_retention_days: int | None = None,
                       actor: User | None) -> Onboarded:
    """A deployment for a team's learner, protected from its first case (module docstring)."""
    slug = slug.strip()
    if not SLUG.match(slug):
        raise ServiceError("the slug is 1-49 lower-case letters, digits and hyphens, starting "
                           "with a letter or digit", field="slug")
    if not name.strip():
        raise ServiceError("a deployment needs a name", field="name")
    if Deployment.objects.filter(slug=slug).exists():
        raise Conflict(f"a deployment {slug!r} exists already", field="slug")
    if image_retention_days is not None and image_retention_days < 1:
        raise ServiceError("images are kept at least a day after the decision",
                           field="image_retention_days")
    checked_regions = _regions_checked(regions)
    existing_client = _client_check(client)
    checked = learner_check(learner)
    checked_labels = _labels_checked(checked.vocab, labels)
    images = reference_zip_read(reference, labels=checked.vocab)
    try:
        with files_deleted_on_error() as written, transaction.atomic():
            deployment = deployment_create(slug=slug, name=name.strip(), labels=checked_labels,
                                           regions=checked_regions, actor=actor)
            if image_retention_days is not None:
                deployment.image_retention_days = image_retention_days
                deployment.save(update_fields=["image_retention_days"])
            champion = model_version_register(deployment=deployment, checked=checked,
                                              name=model_name, champion=True, actor=actor,
                                              notes="registered at onboarding")
            written.append(str(champion.artifact.name))
            stored = reference_set_store(version=champion, images=images, written=written)
            domain_thresholds_fit(deployment=deployment, images=[i.data for i in images])
            api_key, secret = api_key_create(
                user=existing_client or _client_create(client), name=f"{slug} client",
                deployments=[deployment])
    except ValidationError as exc:
        raise ServiceError("; ".join(exc.messages), field="slug") from exc
    # After the commit (the model predicts every reference image): the detector on the model's
    # features guards the deployment from its first case. A set too small to calibrate keeps
    # the reason, shown on the models page; the input limits still guard it.
    reference_detectors_fit(reference_ids=[stored.pk])
    stored.refresh_from_db()
    return Onboarded(deployment=deployment, champion=champion, reference=stored,
                     api_key=api_key, api_key_secret=secret)
