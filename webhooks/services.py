"""Managing webhook endpoints: create, change, rotate the secret, delete, ping, redeliver."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from reviewplatform.errors import Conflict, ServiceError
from reviewplatform.instants import instant_text

from .addresses import literal_refusal
from .models import EVENT_TYPES, PING, WebhookDelivery, WebhookEndpoint
from .signing import secret_new

__all__ = [
    "delivery_redeliver",
    "endpoint_change",
    "endpoint_create",
    "endpoint_ping",
    "retry_until",
    "secret_rotate",
]


def retry_until(now: datetime) -> datetime:
    """When a delivery first tried at `now` stops being retried."""
    return now + timedelta(hours=settings.WEBHOOK_RETRY_HOURS)


URL_HOST_AND_PORT = ("a webhook URL names its host (an IPv6 address in [brackets]) and a port, "
                     "if any, from 1 to 65535, e.g. https://hooks.example.com:8443/events")


def _url_checked(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port  # reading it raises for a port that is no number or over 65535
    except ValueError:
        port = 0
    if port == 0:
        raise ServiceError(URL_HOST_AND_PORT, field="url")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError("a webhook URL starts with https:// (or http://) and names a host",
                           field="url")
    if parts.username or parts.password:
        raise ServiceError("a webhook URL carries no user name or password; the signature "
                           "authenticates the platform", field="url")
    try:
        # What every delivery will do with it: a URL requests refuses would fail them all.
        requests.Request("POST", url).prepare()
    except (requests.RequestException, ValueError):
        raise ServiceError("a webhook URL must be one an HTTP client can send to: "
                           "https://host/path (or http://)", field="url") from None
    refusal = literal_refusal(url)
    if refusal:
        raise ServiceError(refusal, field="url")
    return url


def _event_types_checked(event_types: Sequence[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ServiceError(f"unknown event type(s): {', '.join(unknown)}; choose from "
                           f"{', '.join(EVENT_TYPES)}", field="event_types")
    if not event_types:
        raise ServiceError("choose at least one event type", field="event_types")
    return [t for t in EVENT_TYPES if t in set(event_types)]


def endpoint_create(*, owner: User, url: str, event_types: Sequence[str],
                    description: str = "") -> WebhookEndpoint:
    """Register an endpoint for the cases `owner` submits, with a fresh secret."""
    url = _url_checked(url)
    types = _event_types_checked(event_types)
    with transaction.atomic():
        # Counted under a lock on the owner's row: two creations at once cannot both pass.
        User.objects.select_for_update().filter(pk=owner.pk).first()
        if (WebhookEndpoint.objects.filter(owner=owner).count()
                >= settings.WEBHOOK_ENDPOINTS_MAX):
            raise Conflict(f"an account has at most {settings.WEBHOOK_ENDPOINTS_MAX} "
                           "webhook endpoints; delete one first")
        return WebhookEndpoint.objects.create(owner=owner, url=url, event_types=types,
                                              description=description, secret=secret_new())


def endpoint_change(endpoint: WebhookEndpoint, *, url: str | None = None,
                    event_types: Sequence[str] | None = None, description: str | None = None,
                    is_active: bool | None = None) -> WebhookEndpoint:
    """Change what was given; turning an endpoint back on clears why it was turned off, and its
    waiting deliveries go out again."""
    if url is not None:
        endpoint.url = _url_checked(url)
    if event_types is not None:
        endpoint.event_types = _event_types_checked(event_types)
    if description is not None:
        endpoint.description = description
    if is_active is not None:
        endpoint.is_active = is_active
        endpoint.disabled_reason = "" if is_active else "turned off by its owner"
    endpoint.save()
    return endpoint


def secret_rotate(endpoint: WebhookEndpoint, *, now: datetime) -> WebhookEndpoint:
    """A new secret; the old one keeps signing beside it for WEBHOOK_SECRET_ROTATION_HOURS,
    so that receivers can switch without dropping a delivery."""
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until = now + timedelta(
        hours=settings.WEBHOOK_SECRET_ROTATION_HOURS)
    endpoint.secret = secret_new()
    endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_until",
                                 "updated_at"])
    return endpoint


def endpoint_ping(endpoint: WebhookEndpoint, *, now: datetime) -> WebhookDelivery:
    """Queue a `webhook.ping` for the endpoint, to try it: sent like any event."""
    uid = uuid.uuid4()
    body = json.dumps({"type": PING, "timestamp": instant_text(now),
                       "data": {"endpoint_id": endpoint.pk,
                                "message": "a test event, sent on request"}},
                      separators=(",", ":"))
    return WebhookDelivery.objects.create(endpoint=endpoint, event=None, event_uid=uid,
                                          event_type=PING, body=body, next_attempt_at=now,
                                          retry_until=retry_until(now))


def delivery_redeliver(delivery: WebhookDelivery, *, now: datetime) -> WebhookDelivery:
    """Send a delivery again, as it was (same id and body, signed afresh), with a new retry
    window; its attempt log goes on."""
    if delivery.status == WebhookDelivery.Status.PENDING:
        raise Conflict("this delivery is still being sent; it can be sent again once it "
                       "succeeded or failed")
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.next_attempt_at = now
    delivery.retry_until = retry_until(now)
    delivery.finished_at = None
    delivery.save(update_fields=["status", "next_attempt_at", "retry_until", "finished_at"])
    return delivery
