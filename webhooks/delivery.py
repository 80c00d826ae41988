"""Fanning the outbox out to endpoints, and sending what is due.

`drain()` is one pass of the sender: events not yet fanned out become one `WebhookDelivery` per
subscribed endpoint of the case's client; then due deliveries are claimed (`FOR NO KEY UPDATE
SKIP LOCKED`, their next attempt moved past this sender's deadline, committed), sent outside
any transaction, several at once, and marked. Two senders never send the same claim; a sender
killed after its claim only delays that delivery until its claim lapses.

Sending, the Standard Webhooks way: the stored body's exact bytes, `webhook-id` (the event's,
the same at every attempt), `webhook-timestamp` (this attempt) and `webhook-signature`, set
after any other header. No redirect is followed. 2xx succeeds; 410 turns the endpoint off;
429 and 5xx honour `Retry-After`; anything else backs off exponentially with jitter until the
delivery's retry window (WEBHOOK_RETRY_HOURS) ends, and then it fails for good.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from reviewplatform.instants import instant_text
from reviewplatform.models import CaseEvent

from .addresses import resolved_refusal
from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .services import retry_until
from .signing import signature_header

logger = logging.getLogger(__name__)

USER_AGENT = "reviewplatform-webhooks/1"
EXCERPT_CHARS = 500


def event_body(event: CaseEvent) -> str:
    """The JSON an endpoint receives for an event: its type, time, and the case with what
    changed. Thin on purpose: `GET /api/v1/cases/{id}/` has the rest."""
    case = event.case
    return json.dumps({
        "type": event.type,
        "timestamp": instant_text(event.created_at),
        "data": {"case": {"id": case.pk, "external_id": case.external_id,
                          "deployment": case.deployment.slug, "region": case.region.code,
                          "url": f"/api/v1/cases/{case.pk}/"},
                 **event.data},
    }, separators=(",", ":"))


def events_fan_out(*, now: datetime, limit: int = 500) -> int:
    """Give the oldest events not yet fanned out one delivery per subscribed, active endpoint
    of their case's client. Returns how many events were fanned out."""
    with transaction.atomic():
        events = list(CaseEvent.objects.select_for_update(skip_locked=True, of=("self",))
                      .filter(dispatched_at__isnull=True)
                      .select_related("case__deployment", "case__region")
                      .order_by("id")[:limit])
        if not events:
            return 0
        endpoints: dict[int, list[WebhookEndpoint]] = defaultdict(list)
        for endpoint in WebhookEndpoint.objects.filter(
                owner_id__in={event.case.submitted_by_id for event in events}, is_active=True):
            endpoints[endpoint.owner_id].append(endpoint)
        deliveries = []
        for event in events:
            subscribed = [endpoint for endpoint in endpoints[event.case.submitted_by_id]
                          if event.type in endpoint.event_types]
            if subscribed:
                body = event_body(event)
                deliveries += [WebhookDelivery(endpoint=endpoint, event=event,
                                               event_uid=event.uid, event_type=event.type,
                                               body=body, next_attempt_at=now,
                                               retry_until=retry_until(now))
                               for endpoint in subscribed]
        WebhookDelivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        CaseEvent.objects.filter(pk__in=[event.pk for event in events]).update(
            dispatched_at=now)
    return len(events)


@dataclass(frozen=True, slots=True)
class Claim:
    """A delivery claimed for one attempt, with what sending it needs."""

    delivery_id: int
    attempt: int
    url: str
    secrets: tuple[str, ...]
    msg_id: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt got back: a status code, or an error when no answer came."""

    attempted_at: datetime
    milliseconds: int
    status_code: int | None = None
    error: str = ""
    excerpt: str = ""
    retry_after: float | None = None


def _claim_seconds() -> float:
    # Past the longest an attempt may take (connect and read timeouts), with room to mark it.
    return 2 * settings.WEBHOOK_TIMEOUT_SECONDS + 10


def deliveries_claim(*, now: datetime, limit: int) -> list[Claim]:
    """Claim up to `limit` due deliveries of active endpoints for one attempt each."""
    with transaction.atomic():
        deliveries = list(
            WebhookDelivery.objects.select_for_update(skip_locked=True, no_key=True,
                                                      of=("self",))
            .filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now,
                    endpoint__is_active=True)
            .select_related("endpoint").order_by("next_attempt_at")[:limit])
        if not deliveries:
            return []
        claims = []
        for delivery in deliveries:
            delivery.attempts += 1
            delivery.next_attempt_at = now + timedelta(seconds=_claim_seconds())
            endpoint = delivery.endpoint
            secrets = [endpoint.secret]
            if endpoint.previous_secret and endpoint.previous_secret_until \
                    and endpoint.previous_secret_until > now:
                secrets.append(endpoint.previous_secret)
            claims.append(Claim(delivery_id=delivery.pk, attempt=delivery.attempts,
                                url=endpoint.url, secrets=tuple(secrets),
                                msg_id=str(delivery.event_uid), body=delivery.body.encode()))
        WebhookDelivery.objects.bulk_update(deliveries, ["attempts", "next_attempt_at"])
    return claims


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if re.fullmatch(r"[0-9]+", value):  # not str.isdigit(): it takes "²", float() does not
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - timezone.now()).total_seconds())
    except (TypeError, ValueError):
        return None


def send(claim: Claim) -> Outcome:
    """One attempt: POST the claim's bytes, signed now. Touches no database."""
    started = time.monotonic()
    attempted_at = timezone.now()

    def took() -> int:
        return round((time.monotonic() - started) * 1000)

    refusal = resolved_refusal(claim.url)
    if refusal:
        return Outcome(attempted_at, took(), error=refusal)
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": claim.msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_=claim.secrets, msg_id=claim.msg_id,
                                              timestamp=timestamp, body=claim.body),
    }
    try:
        with requests.post(claim.url, data=claim.body, headers=headers, allow_redirects=False,
                           timeout=settings.WEBHOOK_TIMEOUT_SECONDS, stream=True) as response:
            excerpt = next(response.iter_content(EXCERPT_CHARS), b"")
            return Outcome(attempted_at, took(), status_code=response.status_code,
                           excerpt=excerpt.decode("utf-8", errors="replace")[:EXCERPT_CHARS],
                           retry_after=_retry_after(response))
    except requests.Timeout:
        return Outcome(attempted_at, took(), error=(
            f"no answer within {settings.WEBHOOK_TIMEOUT_SECONDS:g} s"))
    except requests.RequestException as exc:
        return Outcome(attempted_at, took(), error=_connection_error(exc))


def _connection_error(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectionError):
        return "could not connect to the endpoint"
    return f"the request failed ({type(exc).__name__})"


def backoff_seconds(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: doubling from WEBHOOK_BACKOFF_FIRST_SECONDS up to
    WEBHOOK_BACKOFF_MAX_SECONDS, with ±20% jitter so that retries to one receiver spread."""
    base = min(settings.WEBHOOK_BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1),
               settings.WEBHOOK_BACKOFF_MAX_SECONDS)
    return base * random.uniform(0.8, 1.2)


def _what_happened(outcome: Outcome) -> str:
    if outcome.status_code is None:
        return outcome.error
    return f"answered {outcome.status_code}"


def outcome_record(claim: Claim, outcome: Outcome, *, now: datetime) -> str | None:
    """Log the attempt and move the delivery on. Returns the delivery's new status, or None
    when the claim had lapsed and another attempt superseded it (only the log is kept) or the
    delivery was deleted meanwhile."""
    status = outcome.status_code
    with transaction.atomic():
        delivery = (WebhookDelivery.objects.select_for_update(of=("self",))
                    .select_related("endpoint").filter(pk=claim.delivery_id).first())
        if delivery is None:
            return None  # deleted with its endpoint while it was being sent
        WebhookAttempt.objects.create(
            delivery=delivery, attempted_at=outcome.attempted_at,
            status_code=status, error=outcome.error[:500], response_excerpt=outcome.excerpt,
            milliseconds=outcome.milliseconds)
        if (delivery.attempts, delivery.status) != (claim.attempt,
                                                    WebhookDelivery.Status.PENDING):
            return None
        delivery.last_status_code = status
        delivery.last_error = "" if status is not None and 200 <= status < 300 \
            else _what_happened(outcome)[:500]
        if status is not None and 200 <= status < 300:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
        elif status == 410:
            delivery.status = WebhookDelivery.Status.FAILED
            endpoint = delivery.endpoint
            endpoint.is_active = False
            endpoint.disabled_reason = (f"answered 410 Gone on {now:%Y-%m-%d %H:%M} UTC; turn "
                                        "it back on to resume its deliveries")
            endpoint.save(update_fields=["is_active", "disabled_reason", "updated_at"])
        else:
            wait = backoff_seconds(claim.attempt)
            if outcome.retry_after is not None and (status == 429 or (status or 0) >= 500):
                wait = min(outcome.retry_after, settings.WEBHOOK_BACKOFF_MAX_SECONDS)
            delivery.next_attempt_at = now + timedelta(seconds=wait)
            if delivery.next_attempt_at > delivery.retry_until:
                delivery.status = WebhookDelivery.Status.FAILED
        if delivery.status != WebhookDelivery.Status.PENDING:
            delivery.finished_at = now
        delivery.save(update_fields=["status", "next_attempt_at", "last_status_code",
                                     "last_error", "finished_at"])
        return delivery.status


@dataclass
class DrainResult:
    fanned_out: int = 0
    sent: int = 0
    succeeded: int = 0
    #: deliveries that failed for good in this drain
    failed: list[int] = field(default_factory=list)


def drain(*, rounds: int = 20, now: Callable[[], datetime] = timezone.now) -> DrainResult:
    """Fan out and send until nothing is due or `rounds` passes are done. Sends up to
    WEBHOOK_SEND_CONCURRENCY deliveries at once, so that a slow endpoint costs the others at
    most one timeout, never a wait behind it."""
    result = DrainResult()
    concurrency = settings.WEBHOOK_SEND_CONCURRENCY
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(rounds):
            fanned = events_fan_out(now=now())
            claims = deliveries_claim(now=now(), limit=concurrency * 4)
            result.fanned_out += fanned
            if not fanned and not claims:
                break
            sending = {pool.submit(send, claim): claim for claim in claims}
            for done in as_completed(sending):
                claim = sending[done]
                status = outcome_record(claim, done.result(), now=now())
                result.sent += 1
                if status == WebhookDelivery.Status.SUCCEEDED:
                    result.succeeded += 1
                elif status == WebhookDelivery.Status.FAILED:
                    result.failed.append(claim.delivery_id)
    return result
