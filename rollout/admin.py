from django.contrib import admin

from reviewplatform.admin_readonly import ReadOnlyAdminMixin

from .models import PolicyVersion


@admin.register(PolicyVersion)
class PolicyVersionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Policy versions are immutable, and their history is the audit log: they are published
    through the rollout services and never changed or deleted here."""

    list_display = ["deployment", "version", "stage", "author", "created_at", "reason"]
    list_filter = ["deployment", "stage"]
