"""Webhook endpoints, their deliveries and every attempt at one."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from reviewplatform.encryption import EncryptedTextField
from reviewplatform.models import CaseEvent

#: The events an endpoint may subscribe to: the outbox's, and the ping an endpoint's owner
#: sends to try it.
PING = "webhook.ping"
EVENT_TYPES = [*CaseEvent.Type.values]


class WebhookEndpoint(models.Model):
    """A URL an API client registered to be told of its cases' events.

    The secret is the one given to the client (`whsec_` + base64 of 32 random bytes), stored
    encrypted (`reviewplatform.encryption`): signing needs it back. During a rotation the
    previous secret signs too, until `previous_secret_until`."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="webhook_endpoints")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    event_types = models.JSONField(help_text="the event types sent to this endpoint")
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField(blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["owner"], condition=Q(is_active=True),
                                name="webhook_endpoint_active")]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event for one endpoint: the exact bytes to send, and where their sending stands.

    The row, not the task queue, is the source of truth: a sender claims due rows, moves
    `next_attempt_at` past its own deadline and commits before sending, so that a lost job or a
    killed worker only means another attempt."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed", "failed for good"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE,
                                 related_name="deliveries")
    event = models.ForeignKey(CaseEvent, on_delete=models.CASCADE, null=True, blank=True,
                              related_name="deliveries", help_text="none for a ping")
    event_uid = models.UUIDField(help_text="the webhook-id header: the same at every attempt")
    event_type = models.CharField(max_length=32)
    body = models.TextField(help_text="the JSON body, serialised once")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    retry_until = models.DateTimeField(help_text="no attempt after this: the delivery fails")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [models.UniqueConstraint(fields=["event", "endpoint"],
                                               name="webhook_delivery_once_per_endpoint")]
        indexes = [models.Index(fields=["next_attempt_at"], condition=Q(status="pending"),
                                name="webhook_delivery_due"),
                   models.Index(fields=["endpoint", "-id"], name="webhook_delivery_log")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_uid} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One try at sending a delivery: what the endpoint answered, or why nothing came back."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE,
                                 related_name="attempt_log")
    attempted_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    milliseconds = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt at {self.attempted_at:%Y-%m-%d %H:%M:%S}: {self.status_code or self.error}"
