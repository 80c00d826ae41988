"""`Idempotency-Key` for the API's POSTs: the first answer to a key is stored and given again
to a retry of the same request (see `services.idempotency`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from django.contrib.auth.models import User
from drf_spectacular.utils import OpenApiParameter
from rest_framework.request import Request
from rest_framework.response import Response

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
        f"case, with the header `{REPLAYED}: true`) and stores nothing more; with another "
        "request it is a 409 `idempotency_key_reused`; while the first request is still being "
        "processed, a 409 `idempotency_key_in_progress`. Refusals are kept as answers too (a 403 "
        "for a deployment outside the key's scope included), except 429 and 5xx and those "
        "given before the request is read: a missing or refused API key, a key that may not "
        "submit at all. Keys are kept 24 hours."))


def idempotent(request: Request, answer: Callable[[], Response]) -> Response:
    """`answer()` once per key; `answer` turns refusals into responses itself, so that they are
    stored too. Without the header, simply `answer()`."""
    key = request.headers.get(HEADER)
    if key is None:
        return answer()
    files = request.FILES
    data: Any = request.data  # a QueryDict of the form
    fields = [(name, data.getlist(name) if hasattr(data, "getlist") else [data[name]])
              for name in data if name not in files]
    request_hash = idempotency_request_hash(method=request.method or "", path=request.path,
                                            fields=fields, files=files)
    claim = idempotency_key_claim(user=cast(User, request.user), key=key,
                                  request_hash=request_hash)
    if isinstance(claim, Answer):
        return Response(claim.body, status=claim.status_code,
                        headers={**claim.headers, REPLAYED: "true"})
    try:
        response = answer()
    except BaseException:
        idempotency_key_release(claim=claim)
        raise
    idempotency_key_answer(claim=claim, status_code=response.status_code, body=response.data,
                           headers={name: response[name] for name in KEPT_HEADERS
                                    if response.has_header(name)})
    return response
