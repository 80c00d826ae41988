"""The API's JSON parser (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rest_framework import exceptions, parsers

from .nul import NUL_REFUSED, nul_where


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing a body with a NUL character (\\u0000) in any key or string
    with a 400 naming where it is: PostgreSQL stores none in text or jsonb, and a body holding
    one would otherwise fail only when it is written."""

    def parse(self, stream: Any, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        where = nul_where(data)
        if where is not None:
            raise exceptions.ValidationError({where or "non_field_errors": [NUL_REFUSED]})
        return data
