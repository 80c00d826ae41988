"""Routes of the rollout: the page's actions and the staff API."""

from django.urls import path

from . import api, metrics, views, views_alerts, views_scope
from .reports import views as reports

policy = "api/v1/deployments/<slug:slug>/policy/"

urlpatterns = [
    path("deployments/<slug:slug>/rollout/publish/", views_scope.rollout_publish,
         name="rollout-publish"),
    path("deployments/<slug:slug>/rollout/preview/", views_scope.rollout_preview,
         name="rollout-preview"),
    path("deployments/<slug:slug>/rollout/cell-pause/", views.rollout_cell_pause,
         name="rollout-cell-pause"),
    path("deployments/<slug:slug>/rollout/pause/", views.rollout_pause, name="rollout-pause"),
    path("deployments/<slug:slug>/rollout/resume/", views.rollout_resume, name="rollout-resume"),
    path("deployments/<slug:slug>/rollout/rollback/", views.rollout_rollback,
         name="rollout-rollback"),
    path("deployments/<slug:slug>/report/disagreements/", reports.disagreements_page,
         name="report-disagreements"),
    path("deployments/<slug:slug>/report/cases/<id:case_id>/adjudicate/", reports.adjudicate,
         name="report-adjudicate"),
    path("deployments/<slug:slug>/report/decisions.<str:fmt>", reports.export_decisions,
         name="report-export"),
    path("deployments/<slug:slug>/report/retraining.zip", reports.export_retraining,
         name="report-retraining"),
    path("alerts/", views_alerts.alerts_page, name="alerts"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path(policy, api.PolicyApi.as_view(), name="api-policy"),
    path(f"{policy}pause/", api.PolicyPauseApi.as_view(), name="api-policy-pause"),
    path(f"{policy}rollback/", api.PolicyRollbackApi.as_view(), name="api-policy-rollback"),
    path(f"{policy}history/", api.PolicyHistoryApi.as_view(), name="api-policy-history"),
    path(f"{policy}evidence/", api.PolicyEvidenceApi.as_view(), name="api-policy-evidence"),
    path(f"{policy}guardrails/", api.PolicyGuardrailsApi.as_view(),
         name="api-policy-guardrails"),
    path(f"{policy}schedule/", api.PolicyScheduleApi.as_view(), name="api-policy-schedule"),
    path(f"{policy}schedule/<id:change_id>/cancel/", api.PolicyScheduleCancelApi.as_view(),
         name="api-policy-schedule-cancel"),
]
