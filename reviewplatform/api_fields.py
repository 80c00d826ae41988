"""Serializer fields every API of the platform shares."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field(OpenApiTypes.DATETIME)
class OffsetDateTimeField(serializers.Field):
    """An ISO 8601 date-time that must carry its UTC offset: local time alone is ambiguous."""

    default_error_messages = {
        "invalid": "expected an ISO 8601 date-time, e.g. 2026-05-01T21:30:00+02:00",
        "naive": "the date-time needs a UTC offset, e.g. 2026-05-01T21:30:00+02:00",
    }

    def to_internal_value(self, data: Any) -> datetime:
        try:
            value = parse_datetime(str(data))
        except ValueError:
            value = None
        if value is None:
            self.fail("invalid")
        if value.tzinfo is None:
            self.fail("naive")
        return value

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()
