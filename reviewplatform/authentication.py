"""API keys for API clients: `Authorization: Api-Key <prefix>.<secret>`.

Keys are random 256-bit secrets, so a single SHA-256 is enough to store them (no slow password
hash is needed for high-entropy secrets) and lookup is by the public prefix.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .models import ApiKey

KEYWORD = "Api-Key"


def api_key_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD:
            return None
        prefix, dot, _secret = key.strip().partition(".")
        if not dot or not prefix:
            raise exceptions.AuthenticationFailed("malformed API key")
        api_key = (ApiKey.objects.select_related("user")
                   .filter(prefix=prefix, revoked_at__isnull=True).first())
        if api_key is None or not hmac.compare_digest(api_key.hashed_key,
                                                      api_key_hash(key.strip())):
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        if not api_key.user.is_active:
            raise exceptions.AuthenticationFailed("the API key's user is inactive")
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD
