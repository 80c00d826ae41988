"""Serializer fields every API of the platform shares."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
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
            return offset_datetime_parse(data)
        except ValueError as exc:
            self.fail(str(exc))

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


def offset_datetime_parse(raw: Any) -> datetime:
    """`raw` as an aware date-time in UTC; ValueError("invalid") when it is not an ISO 8601
    date-time, ValueError("naive") when it has no UTC offset.

    In UTC because PostgreSQL refuses offsets beyond ±15:59 that Python accepts (up to
    ±23:59), and a date-time near year 1 or 9999 may not exist in UTC at all.
    """
    try:
        value = parse_datetime(str(raw))
    except ValueError:
        value = None
    if value is None:
        raise ValueError("invalid")
    if value.tzinfo is None:
        raise ValueError("naive")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("invalid") from None


class FieldsBuiltOnce:
    """A serializer whose fields are built once per class rather than for every serializer
    made (DRF deep-copies every declared field per serializer, and a ModelSerializer builds
    its fields from the model each time: on the submit path that costs more than the case's
    own checks). Each serializer binds its own copies: shallow ones, since binding sets only
    the copy's own name, parent and source; deep ones for a field holding a child field or a
    nested serializer, whose child is bound to its parent."""

    def get_fields(self) -> dict[str, serializers.Field]:
        cls = type(self)
        built: dict[str, serializers.Field] | None = cls.__dict__.get("_fields_built")
        if built is None:
            built = super().get_fields()  # type: ignore[misc]
            cls._fields_built = built  # type: ignore[attr-defined]
        return {name: copy.deepcopy(field) if _holds_children(field) else copy.copy(field)
                for name, field in built.items()}


def _holds_children(field: serializers.Field) -> bool:
    return (isinstance(field, serializers.BaseSerializer) or hasattr(field, "child")
            or hasattr(field, "child_relation"))
