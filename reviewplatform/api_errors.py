"""One error envelope for every 4xx of the API:

    {"code": "<stable machine code>", "message": "<words>", "fields": {"<field>": ["..."]}}

`code` is one of `invalid`, `not_found`, `conflict`, `not_authenticated`,
`authentication_failed`, `permission_denied`, `throttled`, `method_not_allowed`,
`not_acceptable`, `unsupported_media_type`, `parse_error`, `request_too_large`,
`idempotency_key_reused` and `idempotency_key_in_progress`, and `unavailable` (503, with
`Retry-After`: the database cannot be reached for a moment); clients branch on it, never on the
message. `fields` names the
inputs at fault (empty when the error is not about one input).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ServiceError


class RequestTooLarge(exceptions.APIException):
    """A request body over a limit, refused before it is read."""

    status_code = 413
    default_code = "request_too_large"


# DRF's own codes, kept as they are stable; the words are the platform's.
CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ValidationError: "invalid",
    exceptions.ParseError: "parse_error",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    RequestTooLarge: "request_too_large",
}


def envelope(code: str, message: str, fields: dict[str, list[str]] | None = None
             ) -> dict[str, Any]:
    return {"code": code, "message": message, "fields": fields or {}}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        fields = {exc.field: [exc.message]} if exc.field else {}
        return Response(envelope(exc.code, exc.message, fields), status=exc.status_code)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent):
        exc = too_large(exc)
    response = drf_exception_handler(exc, context)  # status and headers (Allow, Retry-After)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    code = next((c for kind, c in CODES.items() if isinstance(exc, kind)),
                str(getattr(exc, "default_code", "error")))
    if isinstance(exc, exceptions.ValidationError):
        fields = field_errors(exc.detail)
        response.data = envelope(code, validation_message(fields), fields)
    else:
        response.data = envelope(code, message_for(exc, context))
    return response


def too_large(exc: RequestDataTooBig | TooManyFieldsSent | TooManyFilesSent
              ) -> RequestTooLarge:
    """Django's refusals of a request over its upload limits, as a 413 in the platform's words
    (Django would answer its own 400 page)."""
    if isinstance(exc, TooManyFilesSent):
        return RequestTooLarge(f"the request holds more than "
                               f"{settings.DATA_UPLOAD_MAX_NUMBER_FILES} files")
    if isinstance(exc, TooManyFieldsSent):
        return RequestTooLarge(f"the request holds more than "
                               f"{settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields")
    return RequestTooLarge(f"the request's fields, its files apart, are over "
                           f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")


def field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as {"field": [messages]} ("items[0].region" for nesting)."""
    if isinstance(detail, dict):
        fields: dict[str, list[str]] = {}
        for name, inner in detail.items():
            if isinstance(name, int):  # a list field's item: "event_types[0]"
                key = f"{prefix}[{name}]"
            else:
                key = f"{prefix}.{name}" if prefix else str(name)
            fields.update(field_errors(inner, key))
        return fields
    if isinstance(detail, list) and any(isinstance(item, dict | list) for item in detail):
        fields = {}
        for index, inner in enumerate(detail):
            fields.update(field_errors(inner, f"{prefix}[{index}]"))
        return fields
    messages = [str(m) for m in (detail if isinstance(detail, list) else [detail])]
    return {prefix or "non_field_errors": messages} if messages else {}


def validation_message(fields: dict[str, list[str]]) -> str:
    parts = [f"{name}: {' '.join(messages)}" for name, messages in fields.items()]
    return "invalid input (" + "; ".join(parts) + ")" if parts else "invalid input"


def _accepted(context: dict[str, Any]) -> Iterator[str]:
    view = context.get("view")
    for parser in getattr(view, "parser_classes", []):
        yield parser.media_type


def message_for(exc: exceptions.APIException, context: dict[str, Any]) -> str:
    """The platform's words for a refusal that is not about one input."""
    request = context.get("request")
    method = getattr(request, "method", "")
    if isinstance(exc, exceptions.NotAuthenticated):
        return "this needs an API key, sent as the header 'Authorization: Api-Key your-key'"
    if isinstance(exc, exceptions.MethodNotAllowed):
        view = context.get("view")
        allowed = ", ".join(getattr(view, "allowed_methods", []))
        return f"{method} is not allowed here (allowed: {allowed})"
    if isinstance(exc, exceptions.UnsupportedMediaType):
        content_type = getattr(request, "content_type", "") or "no content type"
        return (f"the request body is {content_type.split(';')[0]}; this endpoint reads "
                f"{', '.join(_accepted(context))}")
    if isinstance(exc, exceptions.ParseError):
        content_type = getattr(request, "content_type", "") or "the declared content type"
        return f"the request body could not be read as {content_type.split(';')[0]}"
    if isinstance(exc, exceptions.Throttled):
        seconds = getattr(exc, "wait", None)
        wait = f"; try again in {math.ceil(seconds)} seconds" if seconds else ""
        return f"too many requests{wait}"
    if isinstance(exc, exceptions.NotAcceptable):
        return "this API answers only application/json"
    if str(exc.detail) == str(type(exc).default_detail):
        return {
            exceptions.PermissionDenied: "your account may not do this",
            exceptions.NotFound: "not found",
            exceptions.AuthenticationFailed: "the credentials were not accepted",
        }.get(type(exc), str(exc.detail))
    return str(exc.detail)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """Django's 404 for a URL no view answers: the envelope under /api/, the page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse(envelope("not_found", f"there is no API endpoint at {request.path}"),
                            status=404)
    return defaults.page_not_found(request, exception)


DATABASE_UNAVAILABLE = ("the database cannot be reached just now (a restart or a failover); "
                        "try again in a few seconds")
RETRY_AFTER_SECONDS = 5


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 for an uncaught exception; but a 503 with `Retry-After` when the database
    could not be reached (restarting, failing over, refusing connections), wherever in the
    request that happened: a passing outage, not a fault in the request or a bug. The envelope
    under /api/, a page elsewhere; neither touches the database."""
    if isinstance(sys.exc_info()[1], OperationalError | InterfaceError):
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                envelope("unavailable", DATABASE_UNAVAILABLE), status=503)
        else:
            response = HttpResponse(loader.render_to_string("503.html"), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return defaults.server_error(request)
