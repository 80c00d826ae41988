"""Writes for API keys: create one scoped to deployments, revoke it, note its use.

Keys are random 256-bit secrets, so a single SHA-256 is enough to store them (no slow password
hash is needed for high-entropy secrets); lookup is by the public prefix.

Authentication keeps each key, with its user's permissions and its deployments, in the shared
cache for API_KEY_CACHE_SECONDS (`reviewplatform.authentication`); revoking or changing a key,
its user's permissions or groups, or a deployment makes every request read keys again
(`api_keys_forget`).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..cache import UNREACHABLE
from ..errors import NotFound, ServiceError
from ..models import ApiKey, Deployment

logger = logging.getLogger(__name__)

# How stale `last_used_at` may be: at most one write per key per this long.
LAST_USED_PRECISION = timedelta(minutes=1)
# How long authentication may use a key as it read it, in the shared cache.
API_KEY_CACHE_SECONDS = 10
# Bumped by `api_keys_forget`: a cached key read under another generation is read again.
API_KEYS_GENERATION = "api-keys-generation"


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_cache_key(prefix: str) -> str:
    return f"api-key:{prefix}"


def api_keys_forget(*, update_fields: Iterable[str] | None = None, **_: object) -> None:
    """Make authentication read every key again (a key revoked or rescoped, a user's
    permissions, groups or active flag changed, a deployment's regions): now, and again once
    the current transaction commits, since a request may cache a key as the database shows it
    until then. Connected to the signals of those models (`apps`), so that the admin's changes
    count too; a login's save of `last_login` alone changes nothing a key needs.

    While Redis cannot be reached the change is still made: nothing is cached meanwhile
    (requests read keys from the database), and what was cached before expires within
    API_KEY_CACHE_SECONDS of the change, which a warning says.
    """
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return

    def bump() -> None:
        try:
            cache.incr(API_KEYS_GENERATION)
        except ValueError:  # not set yet, or evicted
            cache.set(API_KEYS_GENERATION, 1, timeout=None)
        except UNREACHABLE as exc:
            logger.warning("the cache (Redis) cannot be reached: API keys cached before this "
                           "change are used until they expire, within %s s: %s",
                           API_KEY_CACHE_SECONDS, exc)
    bump()
    transaction.on_commit(bump)


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
    api_keys_forget()
    api_key = ApiKey.objects.filter(prefix=prefix).first()
    if api_key is None:
        raise NotFound(f"no API key has the prefix {prefix!r}", field="prefix")
    return api_key


def api_key_mark_used(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Note that the key was used, at most once per LAST_USED_PRECISION.

    The guarded update writes only when the stored time is older than that, so concurrent
    requests with one key write once between them, and most requests do not write at all.
    Either way the stored time is then within the last minute (written here, or by the
    request that wrote first), and `api_key` says so until the next minute: a cached copy of
    the key (authentication's) does not try again meanwhile.
    """
    now = now or timezone.now()
    stale_before = now - LAST_USED_PRECISION
    if api_key.last_used_at is not None and api_key.last_used_at > stale_before:
        return
    (ApiKey.objects.filter(pk=api_key.pk)
     .filter(Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale_before))
     .update(last_used_at=now))
    api_key.last_used_at = now
