"""Writes for API keys: create one scoped to deployments, revoke it, note its use.

Keys are random 256-bit secrets, so a single SHA-256 is enough to store them (no slow password
hash is needed for high-entropy secrets); lookup is by the public prefix.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..errors import NotFound, ServiceError
from ..models import ApiKey, Deployment

# How stale `last_used_at` may be: at most one write per key per this long.
LAST_USED_PRECISION = timedelta(minutes=1)


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_create(*, user: User, name: str,
                   deployments: Iterable[Deployment]) -> tuple[ApiKey, str]:
    """Create an API key that may submit to these deployments (at least one).

    The secret is returned once; only its hash is kept.
    """
    scoped = list(deployments)
    if not scoped:
        raise ServiceError("an API key needs at least one deployment to submit to",
                           field="deployments")
    if not name.strip():
        raise ServiceError("an API key needs a name", field="name")
    prefix = secrets.token_hex(4)
    key = f"{prefix}.{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        api_key = ApiKey.objects.create(user=user, name=name, prefix=prefix,
                                        hashed_key=api_key_hash(key))
        api_key.deployments.set(scoped)
    return api_key, key


def api_key_revoke(*, prefix: str, now: datetime | None = None) -> ApiKey:
    """Revoke a key from now on. Revoking a revoked key keeps its first revocation time."""
    now = now or timezone.now()
    ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True).update(revoked_at=now)
    api_key = ApiKey.objects.filter(prefix=prefix).first()
    if api_key is None:
        raise NotFound(f"no API key has the prefix {prefix!r}", field="prefix")
    return api_key


def api_key_mark_used(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Note that the key was used, at most once per LAST_USED_PRECISION.

    The guarded update writes only when the stored time is older than that, so concurrent
    requests with one key write once between them, and most requests do not write at all.
    """
    now = now or timezone.now()
    stale_before = now - LAST_USED_PRECISION
    if api_key.last_used_at is not None and api_key.last_used_at > stale_before:
        return
    updated = (ApiKey.objects.filter(pk=api_key.pk)
               .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before))
               .update(last_used_at=now))
    if updated:
        api_key.last_used_at = now
