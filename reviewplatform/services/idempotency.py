"""Idempotency keys: a client retrying a request with the same `Idempotency-Key` gets the first
answer again instead of a second effect.

The key is claimed (a row without an answer) in its own short transaction before the request is
processed, so that a concurrent retry sees it and is refused with a 409 rather than waiting;
the answer is stored once it is known. Answers of 429 and 5xx are not stored: the claim is let
go, so the client's retry is processed afresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.uploadedfile import UploadedFile
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..errors import Conflict, ServiceError
from ..models import IdempotencyKey

KEY_MAX_LENGTH = 255
HEADER = "Idempotency-Key"
# A claim without an answer this old was left by a request that died (a killed worker): far
# longer than any request may run. A retry takes it over; should the first request's case have
# been stored, the retry is refused as a repeated external_id rather than stored twice.
CLAIM_ABANDONED_SECONDS = 300


class KeyReused(Conflict):
    code = "idempotency_key_reused"


class KeyInProgress(Conflict):
    code = "idempotency_key_in_progress"


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: Any
    headers: dict[str, str]


def idempotency_request_hash(*, method: str, path: str,
                             fields: Iterable[tuple[str, list[Any]]],
                             files: Mapping[str, UploadedFile]) -> str:
    """SHA-256 of the request: its method, path, fields (each name's values, in order) and the
    SHA-256 of each file's content (not its name)."""
    file_hashes = {}
    for name, upload in files.items():
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        file_hashes[name] = digest.hexdigest()
    text = json.dumps({"method": method, "path": path, "fields": dict(sorted(fields)),
                       "files": file_hashes}, sort_keys=True, cls=DjangoJSONEncoder)
    return hashlib.sha256(text.encode()).hexdigest()


def idempotency_key_claim(*, user: User, key: str, request_hash: str
                          ) -> IdempotencyKey | Answer:
    """Claim `key` for this request, or return the answer already given to it.

    Refused: a key that is empty or over 255 characters (400), a key used with another request
    (409 `idempotency_key_reused`), a key whose first request is still being processed
    (409 `idempotency_key_in_progress`; after CLAIM_ABANDONED_SECONDS the claim is taken over).
    A key older than IDEMPOTENCY_KEY_HOURS is forgotten.
    """
    if not 1 <= len(key) <= KEY_MAX_LENGTH:
        raise ServiceError(f"the {HEADER} header must be 1 to {KEY_MAX_LENGTH} characters long "
                           f"(it is {len(key)})", field=HEADER)
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    IdempotencyKey.objects.filter(user=user, key=key, created_at__lt=cutoff).delete()
    try:
        with transaction.atomic():
            return IdempotencyKey.objects.create(user=user, key=key, request_hash=request_hash)
    except IntegrityError:
        pass
    existing = IdempotencyKey.objects.filter(user=user, key=key).first()
    if existing is None:  # let go between the insert and this read: claim it again
        return idempotency_key_claim(user=user, key=key, request_hash=request_hash)
    if existing.request_hash != request_hash:
        raise KeyReused(f"this {HEADER} was used with another request; use a new key for a "
                        "new request", field=HEADER)
    if existing.status_code is None:
        abandoned = timezone.now() - timedelta(seconds=CLAIM_ABANDONED_SECONDS)
        if IdempotencyKey.objects.filter(pk=existing.pk, status_code__isnull=True,
                                         created_at__lt=abandoned
                                         ).update(created_at=timezone.now()) == 1:
            existing.refresh_from_db()
            return existing
        raise KeyInProgress(f"the first request with this {HEADER} is still being processed; "
                            "retry in a moment", field=HEADER)
    return Answer(existing.status_code, existing.body, existing.headers)


def idempotency_key_answer(*, claim: IdempotencyKey, status_code: int, body: Any,
                           headers: dict[str, str]) -> None:
    """Store the answer to a claimed key; a 429 or a 5xx lets the key go instead."""
    if status_code == 429 or status_code >= 500:
        idempotency_key_release(claim=claim)
        return
    body = json.loads(json.dumps(body, cls=DjangoJSONEncoder))
    IdempotencyKey.objects.filter(pk=claim.pk).update(status_code=status_code, body=body,
                                                      headers=headers)


def idempotency_key_release(*, claim: IdempotencyKey) -> None:
    IdempotencyKey.objects.filter(pk=claim.pk, status_code__isnull=True).delete()


def idempotency_keys_expire() -> int:
    """Delete the keys older than IDEMPOTENCY_KEY_HOURS; returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
