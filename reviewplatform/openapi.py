"""How the API describes itself in its OpenAPI schema (drf-spectacular): the API key security
scheme, and the error envelope every 4xx (and the 503 of a database out of reach) answers, as
one reusable component.

A 405 is not documented: an operation is a method the path has, and OpenAPI lists no others.

The API modules import `errors` from here, which also registers the authentication extension
before any schema is generated.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from .authentication import KEYWORD

__all__ = ["ApiKeyScheme", "ErrorSerializer", "errors", "not_acceptable_documented"]


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "reviewplatform.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": f"`{KEYWORD} <key>`: the key as it was shown once at its "
                               "creation, after the word Api-Key and a space."}


class ErrorSerializer(serializers.Serializer):
    """The one envelope of every 4xx answer."""

    code = serializers.CharField(help_text=(
        "Stable machine code to branch on: invalid, not_found, conflict, not_authenticated, "
        "authentication_failed, permission_denied, throttled, method_not_allowed, "
        "not_acceptable, unsupported_media_type, parse_error, request_too_large, "
        "idempotency_key_reused, idempotency_key_in_progress or (503) unavailable."))
    message = serializers.CharField(help_text="What went wrong, in words for a person.")
    # Declared fields leave the class's attributes (DRF's metaclass): no clash with
    # Serializer.fields but for mypy.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        help_text="The inputs at fault, each with its messages (\"items[0].region\" for a "
                  "nested one); empty when the error is not about one input.")

    class Meta:
        ref_name = "Error"


WHEN = {
    400: "Invalid input, named in `fields` (`code`: invalid or parse_error); nothing stored.",
    401: "No API key, or a key that is malformed, unknown or revoked.",
    403: "The key's user may not do this.",
    404: "Not found, or not yours.",
    406: "The request's `Accept` header excludes application/json, the only answer there is.",
    409: "Conflicts with the current state; nothing changed.",
    413: "The request body is over a size limit; nothing was read or stored.",
    415: "The request body is not in a media type this endpoint reads.",
    429: "Too many requests for this key; wait the `Retry-After` seconds.",
    503: "The database cannot be reached just now (a restart or a failover); nothing was "
         "stored: try again after the `Retry-After` seconds (`code`: unavailable).",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error envelope as the answer for each of `statuses`."""
    return {status: OpenApiResponse(ErrorSerializer, description=WHEN[status])
            for status in statuses}


METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def not_acceptable_documented(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A postprocessing hook: every operation may answer 406 (the API answers only JSON) and
    503 (the database unreachable for a moment, `api_errors.server_error`), so each documents
    them, with the envelope."""
    for status in (406, 503):
        answer = {"description": WHEN[status], "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/Error"}}}}
        for path in result.get("paths", {}).values():
            for method, operation in path.items():
                if method in METHODS:
                    operation.setdefault("responses", {}).setdefault(str(status), answer)
    return result
