from django.contrib import admin

from reviewplatform.admin_readonly import ReadOnlyAdminMixin

from .models import Alert, PolicyVersion


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Policy versions are immutable, and their history is the audit log: they are published
    through the rollout services and never changed or deleted here."""

    list_display = ["deployment", "version", "stage", "author", "created_at", "reason"]
    list_filter = ["deployment", "stage"]


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Alerts are written when they are sent; the admin only reads them."""

    list_display = ["created_at", "event", "deployment", "subject"]
    list_filter = ["event", "deployment"]
