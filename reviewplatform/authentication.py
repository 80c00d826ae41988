"""API keys for API clients: `Authorization: Api-Key <prefix>.<secret>`, each scoped to the
deployments it may submit to.

Only the key's hash is stored (see `services.api_keys`); lookup is by the public prefix.

A key is read with its user, the user's permissions and the key's deployments with their
regions, and kept so in the shared cache for API_KEY_CACHE_SECONDS: a submit then needs no
query before its own INSERT. Revoking or changing a key, its user or a deployment makes every
request read the keys again (`api_keys_forget`).
"""

from __future__ import annotations

import hmac
from typing import Any

from django.core.cache import cache
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .errors import Forbidden, ServiceError
from .models import ApiKey, Deployment
from .services.api_keys import (
    API_KEY_CACHE_SECONDS,
    API_KEYS_GENERATION,
    api_key_cache_key,
    api_key_hash,
    api_key_mark_used,
)

KEYWORD = "Api-Key"

__all__ = ["KEYWORD", "ApiKeyAuthentication", "api_key_hash", "deployment_for_submit",
           "request_api_key"]


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = authentication.get_authorization_header(request).decode(errors="replace")
        scheme, _, key = header.partition(" ")
        if scheme != KEYWORD:
            return None
        prefix, dot, _secret = key.strip().partition(".")
        if not dot or not prefix:
            raise exceptions.AuthenticationFailed("malformed API key")
        generation, api_key = _api_key_read(prefix)
        if api_key is None or not hmac.compare_digest(api_key.hashed_key,
                                                      api_key_hash(key.strip())):
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        if not api_key.user.is_active:
            raise exceptions.AuthenticationFailed("the API key's user is inactive")
        noted = api_key.last_used_at
        api_key_mark_used(api_key=api_key)
        if api_key.last_used_at != noted:
            cache.set(api_key_cache_key(prefix), (generation, api_key), API_KEY_CACHE_SECONDS)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


def _api_key_read(prefix: str) -> tuple[int, ApiKey | None]:
    """The unrevoked key of this prefix, from the cache or else the database, with the cache's
    generation: its user with the user's permissions read (ModelBackend keeps them on the user
    object, which the cache keeps too), and its deployments with their regions."""
    name = api_key_cache_key(prefix)
    found = cache.get_many([API_KEYS_GENERATION, name])
    generation = found.get(API_KEYS_GENERATION, 0)
    cached = found.get(name)
    if cached is not None and cached[0] == generation:
        return generation, cached[1]
    api_key = (ApiKey.objects.select_related("user").prefetch_related("deployments__regions")
               .filter(prefix=prefix, revoked_at__isnull=True).first())
    if api_key is not None:
        api_key.user.get_all_permissions()
        cache.set(name, (generation, api_key), API_KEY_CACHE_SECONDS)
    return generation, api_key


def request_api_key(request: Request) -> ApiKey | None:
    """The API key a request was authenticated with; None for a staff session."""
    return request.auth if isinstance(request.auth, ApiKey) else None


def deployment_for_submit(*, slug: str, api_key: ApiKey | None) -> Deployment:
    """The deployment named `slug`, if the request may submit a case to it.

    With an API key, a slug outside the key's deployments is refused with a 403 naming them,
    whether or not a deployment of that name exists: the answer does not tell a client which
    deployments exist. Without a key (a staff session) nothing is scoped, and an unknown slug is
    a 400.
    """
    if api_key is None:
        deployment = Deployment.objects.filter(slug=slug).first()
        if deployment is None:
            raise ServiceError(f"unknown deployment {slug!r}", field="deployment")
        return deployment
    # `.all()`: the deployments read with the key (`_api_key_read`), no query.
    scoped = api_key.deployments.all()
    deployment = next((d for d in scoped if d.slug == slug), None)
    if deployment is None:
        allowed = sorted(d.slug for d in scoped)
        raise Forbidden(f"this API key may not submit to deployment {slug!r}; it may submit "
                        f"to: {', '.join(allowed) or 'no deployment'}", field="deployment")
    return deployment
