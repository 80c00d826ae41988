"""The creation of a deployment, with its first policy version."""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth.models import User
from django.db import transaction

from reviewplatform.models import Deployment
from reviewplatform.services import deployment_store

from ..models import Stage
from .policy import policy_publish


def deployment_create(
    *,
    slug: str,
    name: str,
    labels: list[str],
    regions: Iterable[tuple[str, str, str]],
    actor: User | None,
) -> Deployment:
    """Create a deployment with its regions (code, name, time zone) and its first policy
    version: the shadow stage, where the model only watches."""
    with transaction.atomic():
        deployment = deployment_store(slug=slug, name=name, labels=labels, regions=regions)
        policy_publish(deployment=deployment, stage=Stage.SHADOW, rules=[], actor=actor,
                       reason="deployment created: the model starts in shadow mode")
    return deployment
