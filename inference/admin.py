from django.contrib import admin

from .models import ModelVersion, Prediction


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["deployment", "name", "is_champion", "is_active", "sha256", "created_at"]
    list_filter = ["deployment", "is_champion", "is_active"]
    readonly_fields = ["sha256", "labels", "artifact"]

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Artifacts are pickles: they are registered by `manage.py register_model`, which
        # proves that they load and predict.
        return False


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ["case", "model_version", "status", "label", "confidence", "latency_ms",
                    "created_at"]
    list_filter = ["status", "model_version"]
