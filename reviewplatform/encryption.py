"""Values kept encrypted in the database: what the platform must read back but a copy of the
database must not give away (the webhook endpoints' signing secrets).

Fernet (`cryptography`: AES-128-CBC with an HMAC-SHA256, a timestamp and a version byte). The
keys are FIELD_ENCRYPTION_KEYS, newest first: the first encrypts, any of them decrypts. Unset,
they are derived (HKDF-SHA256) from SECRET_KEY and then each of SECRET_KEY_FALLBACKS, so that
rotating SECRET_KEY the way Django asks (the old key kept in SECRET_KEY_FALLBACKS) keeps every
value readable; a value is encrypted again with the newest key whenever its row is saved.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

# What a derived key is for: a key derived for another use from the same SECRET_KEY differs.
_PURPOSE = b"reviewplatform encrypted fields"


def key_derived(secret_key: str) -> bytes:
    """A Fernet key derived from a Django SECRET_KEY."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_keys: tuple[str, ...]) -> MultiFernet:
    if keys:
        return MultiFernet([Fernet(key) for key in keys])
    return MultiFernet([Fernet(key_derived(secret)) for secret in secret_keys])


def fernet() -> MultiFernet:
    """The settings' keys, newest first (cached per set of keys, so a test may change them)."""
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS),
                   (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS))


def encrypt(value: str) -> str:
    return fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured(
            "a value stored encrypted could not be decrypted with FIELD_ENCRYPTION_KEYS (or, "
            "unset, keys derived from SECRET_KEY and SECRET_KEY_FALLBACKS): was a key "
            "replaced without keeping the old one after it?") from None


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token and read back as the text; not searchable."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return None if value is None else encrypt(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return None if value is None else decrypt(value)
