from django.contrib import admin

from .models import ApiKey, Case, Decision, Deployment, Region, Review, ReviewTask


class RegionInline(admin.TabularInline):
    model = Region
    extra = 0


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "created_at"]
    inlines = [RegionInline]


@admin.register(Region)
class RegionAdmin(admin.ModelAdmin):
    list_display = ["deployment", "code", "name", "timezone"]
    list_filter = ["deployment"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "user", "created_at", "revoked_at"]
    readonly_fields = ["prefix", "hashed_key"]


@admin.register(Case)
class CaseAdmin(admin.ModelAdmin):
    list_display = ["id", "deployment", "region", "external_id", "status", "captured_at",
                    "created_at"]
    list_filter = ["deployment", "status", "region"]
    search_fields = ["external_id"]
    readonly_fields = ["image_sha256", "width", "height"]


@admin.register(ReviewTask)
class ReviewTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "reason", "priority", "status", "claimed_by",
                    "lease_expires_at", "created_at"]
    list_filter = ["status", "reason"]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "reviewer", "answer", "mode", "seconds", "created_at"]
    list_filter = ["mode", "reviewer"]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["case", "label", "source", "policy_version", "decided_at"]
    list_filter = ["source"]
