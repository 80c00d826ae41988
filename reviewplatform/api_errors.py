"""One JSON error shape for the API: {"error": "...", "fields": {...}}."""

from typing import Any

from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import ServiceError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        body: dict[str, Any] = {"error": exc.message}
        if exc.field:
            body["fields"] = {exc.field: [exc.message]}
        return Response(body, status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError) and isinstance(exc.detail, dict):
        fields = {name: [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
                  for name, msgs in exc.detail.items()}
        summary = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in fields.items())
        response.data = {"error": f"invalid input ({summary})", "fields": fields}
    elif isinstance(exc, exceptions.APIException):
        response.data = {"error": str(exc.detail)}
    return response
