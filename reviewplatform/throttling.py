"""Throttling of the API per API key, on the shared cache (Redis in production).

A client's keys are counted apart, so that one busy integration does not starve another; a
logged-in session counts per user. Over the rate, DRF answers 429 with `Retry-After`.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from .models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    """At most API_THROTTLE_RATE requests per key in a sliding window.

    The history is read and written back without a lock, so concurrent requests with one key
    may pass a few over the rate: a limit against floods, not an exact quota.
    """

    scope = "api_key"

    def get_rate(self) -> str:
        # Read on each request (not once at import), so that a test may lower it.
        return str(settings.API_THROTTLE_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, ApiKey):
            ident = f"key:{request.auth.prefix}"
        elif request.user is not None and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
