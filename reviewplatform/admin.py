from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .errors import ServiceError
from .models import ApiKey, Case, Decision, Deployment, GoldCase, Region, Review, ReviewTask
from .services import case_gold_mark, case_gold_unmark


class RegionInline(admin.TabularInline):
    model = Region
    extra = 0


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "review_mode", "second_opinion_rate", "gold_rate",
                    "created_at"]
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
    actions = ["mark_gold_from_decision", "unmark_gold"]

    def has_mark_gold_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("reviewplatform.mark_gold")

    @admin.action(description="Mark as gold, with the human decision as the known answer",
                  permissions=["mark_gold"])
    def mark_gold_from_decision(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        marked = 0
        for case in queryset.select_related("decision", "deployment"):
            decision = getattr(case, "decision", None)
            if decision is None or decision.source != Decision.Source.HUMAN:
                self.message_user(request, f"{case}: no human decision to use as the answer",
                                  messages.WARNING)
                continue
            try:
                case_gold_mark(case=case, label=decision.label, actor=request.user)  # type: ignore[arg-type]
            except ServiceError as exc:
                self.message_user(request, f"{case}: {exc.message}", messages.ERROR)
                continue
            marked += 1
        self.message_user(request, f"{marked} case(s) marked gold")

    @admin.action(description="Stop serving as gold", permissions=["mark_gold"])
    def unmark_gold(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        for case in queryset:
            case_gold_unmark(case=case)


@admin.register(GoldCase)
class GoldCaseAdmin(admin.ModelAdmin):
    list_display = ["case", "label", "is_active", "marked_by", "created_at"]
    list_filter = ["is_active", "case__deployment"]
    raw_id_fields = ["case"]
    readonly_fields = ["marked_by"]

    def save_model(self, request: HttpRequest, obj: GoldCase, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        gold = case_gold_mark(case=obj.case, label=obj.label, actor=request.user)  # type: ignore[arg-type]
        obj.pk = gold.pk
        if not obj.is_active:
            case_gold_unmark(case=obj.case)


@admin.register(ReviewTask)
class ReviewTaskAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "reason", "urgent", "reason_rank", "priority", "status",
                    "claimed_by", "lease_expires_at", "created_at"]
    list_filter = ["status", "reason", "urgent"]
    raw_id_fields = ["case", "follows", "claimed_by"]


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["id", "case", "reviewer", "answer", "blind_answer", "mode", "seconds",
                    "created_at"]
    list_filter = ["mode", "reviewer"]


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ["case", "label", "source", "policy_version", "decided_at"]
    list_filter = ["source"]
