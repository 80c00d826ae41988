"""Instants as the API writes them, in answers and webhook payloads alike: ISO 8601 in UTC with
a `Z`, as DRF's date-time fields write them (`2026-05-01T19:31:02.114000Z`)."""

from __future__ import annotations

from datetime import UTC, datetime


def instant_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
