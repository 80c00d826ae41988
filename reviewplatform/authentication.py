"""API keys for API clients: `Authorization: Api-Key <prefix>.<secret>`.

Only the key's hash is stored (see `services.api_keys`); lookup is by the public prefix.
"""

from __future__ import annotations

import hmac
from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from .models import ApiKey, Deployment
from .services.api_keys import api_key_hash, api_key_mark_used

KEYWORD = "Api-Key"

__all__ = ["KEYWORD", "ApiKeyAuthentication", "ApiKeyScopedToDeployment", "api_key_hash"]


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


class ApiKeyScopedToDeployment(permissions.BasePermission):
    """A request made with an API key may name only a deployment the key is scoped to.

    Reads the `deployment` slug of the request's body; a slug that names no deployment is left
    to the view's validation. Requests authenticated otherwise (a staff session) are not scoped
    by a key.
    """

    message = "this API key may not submit to that deployment"

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True
        slug = request.data.get("deployment") if hasattr(request.data, "get") else None
        if not isinstance(slug, str) or not slug:
            return True  # the view's validation names the missing field
        if api_key.deployments.filter(slug=slug).exists():
            return True
        if not Deployment.objects.filter(slug=slug).exists():
            return True  # the view answers 400, naming the unknown deployment
        allowed = sorted(api_key.deployments.values_list("slug", flat=True))
        self.message = (f"this API key may not submit to deployment {slug!r}; it may submit "
                        f"to: {', '.join(allowed) or 'no deployment'}")
        return False
