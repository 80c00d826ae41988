"""`Idempotency-Key` for the API's POSTs (the submit and the batch): the first answer to a key
is stored and given again to a retry of the same request (see `services.idempotency`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .services.idempotency import (
    HEADER,
    KEY_MAX_LENGTH,
    Answer,
    idempotency_key_answer,
    idempotency_key_claim,
    idempotency_key_release,
    idempotency_request_hash,
)

# Headers of the first answer that a replay gives again.
KEPT_HEADERS = ("Location",)
REPLAYED = "Idempotent-Replayed"

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name=HEADER, type=str, location=OpenApiParameter.HEADER, required=False,
    description=(
        f"Up to {KEY_MAX_LENGTH} characters of your choice (a UUID) that make a retry safe: "
        "the same key with the same request answers the first answer again (same status, same "
        f"body, with the header `{REPLAYED}: true`) and stores nothing more; with another "
        "request it is a 409 `idempotency_key_reused`; while the first request is still being "
        "processed, a 409 `idempotency_key_in_progress`. Refusals are kept as answers too (a 403 "
        "for a deployment outside the key's scope included), except 429 and 5xx and those "
        "given before the request is read: a missing or refused API key, a key that may not "
        "submit at all. Keys are kept 24 hours."))


def idempotent(view: APIView, request: Request, submit: Callable[[], Response]) -> Response:
    """`submit()` once per `Idempotency-Key`: its answer is stored and given again to a retry.

    A refusal that `submit` raises is turned into its response here, by the view's exception
    handler, so that it is stored too; a crash lets the key go. Without the header, simply
    `submit()`.
    """
    key = request.headers.get(HEADER)
    if key is None:
        return submit()
    files = request.FILES
    request_hash = idempotency_request_hash(method=request.method or "", path=request.path,
                                            fields=_fields(request.data, files), files=files)
    claim = idempotency_key_claim(user=cast(User, request.user), key=key,
                                  request_hash=request_hash)
    if isinstance(claim, Answer):
        return Response(claim.body, status=claim.status_code,
                        headers={**claim.headers, REPLAYED: "true"})
    try:
        response = _answer(view, submit)
    except BaseException:
        idempotency_key_release(claim=claim)
        raise
    idempotency_key_answer(claim=claim, status_code=response.status_code, body=response.data,
                           headers={name: response[name] for name in KEPT_HEADERS
                                    if response.has_header(name)})
    return response


def _answer(view: APIView, submit: Callable[[], Response]) -> Response:
    """`submit()`'s response, or the response to the refusal it raised; a crash is raised."""
    try:
        return submit()
    except Exception as exc:
        return view.handle_exception(exc)


def _fields(data: Any, files: Mapping[str, Any]) -> list[tuple[str, list[Any]]]:
    """The request's fields, each name with its values: those of a form (its files apart) or
    of a JSON object; any other JSON body is one field without a name."""
    if hasattr(data, "getlist"):
        return [(name, data.getlist(name)) for name in data if name not in files]
    if isinstance(data, dict):
        return [(name, [value]) for name, value in data.items()]
    return [("", [data])]
