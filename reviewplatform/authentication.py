"""API keys for API clients: `Authorization: Api-Key <prefix>.<secret>`, each scoped to the
deployments it may submit to.

Only the key's hash is stored (see `services.api_keys`); lookup is by the public prefix.
"""

from __future__ import annotations

import hmac
from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from .errors import Forbidden, ServiceError
from .models import ApiKey, Deployment
from .services.api_keys import api_key_hash, api_key_mark_used

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
        api_key = (ApiKey.objects.select_related("user")
                   .filter(prefix=prefix, revoked_at__isnull=True).first())
        if api_key is None or not hmac.compare_digest(api_key.hashed_key,
                                                      api_key_hash(key.strip())):
            raise exceptions.AuthenticationFailed("invalid or revoked API key")
        if not api_key.user.is_active:
            raise exceptions.AuthenticationFailed("the API key's user is inactive")
        api_key_mark_used(api_key=api_key)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD


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
    deployment = api_key.deployments.filter(slug=slug).first()
    if deployment is None:
        allowed = sorted(api_key.deployments.values_list("slug", flat=True))
        raise Forbidden(f"this API key may not submit to deployment {slug!r}; it may submit "
                        f"to: {', '.join(allowed) or 'no deployment'}", field="deployment")
    return deployment
