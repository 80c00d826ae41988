"""Webhook records in the admin, to read only: what was sent where, and how it went. Their
owners manage endpoints over the API; the secret is never shown here."""

from django.contrib import admin

from reviewplatform.admin_readonly import ReadOnlyAdminMixin
from reviewplatform.models import CaseEvent

from .models import WebhookAttempt, WebhookDelivery, WebhookEndpoint


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "owner", "url", "event_types", "is_active", "disabled_reason",
                    "created_at"]
    list_filter = ["is_active"]
    search_fields = ["url", "owner__username"]
    exclude = ["secret", "previous_secret"]


class AttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = WebhookAttempt
    fields = ["attempted_at", "status_code", "error", "response_excerpt", "milliseconds"]
    extra = 0


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "event_type", "event_uid", "endpoint", "status", "attempts",
                    "last_status_code", "last_error", "next_attempt_at", "created_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["event_uid", "endpoint__url"]
    inlines = [AttemptInline]


@admin.register(CaseEvent)
class CaseEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["id", "type", "case", "version", "created_at", "dispatched_at"]
    list_filter = ["type"]
    search_fields = ["uid"]
    raw_id_fields = ["case"]
