from collections import Counter
from typing import cast

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest

from reviewplatform.admin_readonly import ReadOnlyAdminMixin
from reviewplatform.errors import ServiceError

from .models import ModelVersion, ModelVersionEvent, Prediction
from .permissions import REGISTER_PERM
from .services import model_version_promote, model_version_set_active


def _reason(request: HttpRequest, done: str) -> str:
    return f"{done} from /admin/ by {request.user.get_username()}"


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Champion and active flags change only through the audited services (the actions below),
    so that every change leaves a ModelVersionEvent."""

    list_display = ["deployment", "name", "is_champion", "is_active", "sha256", "created_at"]
    list_filter = ["deployment", "is_champion", "is_active"]
    readonly_fields = ["deployment", "sha256", "labels", "artifact", "is_champion", "is_active",
                       "created_by", "created_at"]
    actions = ["promote", "retire", "reactivate"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Artifacts are pickles: they are registered by `manage.py register_model`, which
        # proves that they load and predict.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None
                              ) -> bool:
        # Predictions and the audit log point at a version: retire it instead.
        return False

    def has_register_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(REGISTER_PERM)

    @admin.action(description="Promote to champion", permissions=["register"])
    def promote(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        versions = list(queryset.select_related("deployment"))
        selected = Counter(version.deployment_id for version in versions)
        for version in versions:
            label = f"{version.deployment.slug}/{version.name}"
            if selected[version.deployment_id] > 1:
                self.message_user(request, f"{label}: select one version per deployment to "
                                  "promote", messages.ERROR)
                continue
            try:
                model_version_promote(version=version, actor=cast(User, request.user),
                                      reason=_reason(request, "promoted"))
            except ServiceError as exc:
                self.message_user(request, f"{label}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{label} is now the champion")

    @admin.action(description="Retire (stop predicting)", permissions=["register"])
    def retire(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Reactivate", permissions=["register"])
    def reactivate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        self._set_active(request, queryset, active=True)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[ModelVersion], *,
                    active: bool) -> None:
        done = "reactivated" if active else "retired"
        for version in queryset.select_related("deployment"):
            label = f"{version.deployment.slug}/{version.name}"
            try:
                model_version_set_active(version=version, active=active,
                                         actor=cast(User, request.user),
                                         reason=_reason(request, done))
            except ServiceError as exc:
                self.message_user(request, f"{label}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"{label} {done}")


@admin.register(ModelVersionEvent)
class ModelVersionEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The audit log of model versions: written by the inference services only."""

    list_display = ["model_version", "action", "actor", "reason", "created_at"]
    list_filter = ["action", "model_version__deployment"]


@admin.register(Prediction)
class PredictionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["case", "model_version", "status", "label", "confidence", "latency_ms",
                    "created_at"]
    list_filter = ["status", "model_version"]
