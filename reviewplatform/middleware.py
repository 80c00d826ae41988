"""Middleware of the project."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from .api_errors import envelope
from .nul import NUL

QUERY_NUL_REFUSED = "query parameters may not contain NUL characters"


class QueryNulRefused:
    """A 400 for a query string holding a NUL character (%00, once decoded), before any view:
    no page or filter has a use for one, and PostgreSQL refuses it in any text it is compared
    with. The error envelope under /api/ (naming the parameters), the 400 page elsewhere."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("QUERY_STRING", "")
        # Parsed only when it may hold one: request.GET refuses too many parameters itself,
        # and the API answers that in its own words.
        if "%00" in raw or NUL in raw:
            pairs = list(request.GET.lists())
            if any(NUL in key or any(NUL in v for v in values) for key, values in pairs):
                return self.refused(request, pairs)
        return self.get_response(request)

    @staticmethod
    def refused(request: HttpRequest, pairs: list[tuple[str, list[str]]]) -> HttpResponse:
        if request.path.startswith("/api/"):
            fields = {key: [f"{key} may not contain NUL characters"] for key, values in pairs
                      if NUL not in key and any(NUL in v for v in values)}
            return JsonResponse(envelope("invalid", QUERY_NUL_REFUSED, fields), status=400)
        return render(request, "400.html", {"exception": QUERY_NUL_REFUSED}, status=400)
