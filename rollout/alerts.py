"""Alerts to admins: kept for the in-app list (`Alert`, `/alerts/`), an email, and a webhook
POST signed with HMAC-SHA256.

The webhook body is JSON; the header `X-Rollout-Signature: sha256=<hex>` is the HMAC-SHA256 of
the exact body bytes under `ROLLOUT_ALERT_WEBHOOK_SECRET`. Sent after the change commits; a
failing receiver is logged and never undoes the change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import DatabaseError, transaction

from reviewplatform.models import Deployment

from .models import Alert

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Rollout-Signature"


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_recipients() -> list[str]:
    emails = list(getattr(settings, "ROLLOUT_ALERT_EMAILS", []))
    return emails or [email for _, email in getattr(settings, "ADMINS", [])]


def _kept(*, subject: str, body: str, payload: dict[str, Any]) -> None:
    """The alert in the database, for the in-app list; one that cannot be written is logged
    and still sent."""
    slug = payload.get("deployment")
    try:
        deployment = (Deployment.objects.filter(slug=slug).first()
                      if isinstance(slug, str) else None)
        with transaction.atomic():
            Alert.objects.create(event=str(payload.get("event", ""))[:40],
                                 deployment=deployment, subject=subject[:300], body=body,
                                 payload=json.loads(json.dumps(payload, default=str)))
    except DatabaseError:
        logger.exception("rollout alert not kept: %s", subject)


def admins_alert(*, subject: str, body: str, payload: dict[str, Any]) -> None:
    """Keep the alert for the in-app list, email the admins and POST the payload to the alert
    webhook, where configured."""
    _kept(subject=subject, body=body, payload=payload)
    recipients = alert_recipients()
    if recipients:
        try:
            send_mail(f"[rollout] {subject}", body, None, recipients)
        except (OSError, ConnectionError):
            logger.exception("rollout alert email failed: %s", subject)
    url = getattr(settings, "ROLLOUT_ALERT_WEBHOOK_URL", "")
    if not url:
        return
    data = json.dumps({"subject": subject, "text": body, **payload}, sort_keys=True,
                      default=str).encode()
    headers = {"Content-Type": "application/json",
               SIGNATURE_HEADER: signature(data, getattr(settings,
                                                         "ROLLOUT_ALERT_WEBHOOK_SECRET", ""))}
    try:
        response = requests.post(url, data=data, headers=headers,
                                 timeout=getattr(settings, "ROLLOUT_ALERT_WEBHOOK_TIMEOUT", 5.0))
        response.raise_for_status()
    except requests.RequestException:
        logger.exception("rollout alert webhook failed: %s", subject)
