from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from rollout import views as rollout_views

from . import (
    api,
    api_batch,
    api_onboarding,
    api_webhooks,
    health,
    views,
    views_case,
    views_onboarding,
)

handler404 = "reviewplatform.api_errors.page_not_found"
handler500 = "reviewplatform.api_errors.server_error"

urlpatterns = [
    path("", views.home, name="review-home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("review/next/", views.review_next, name="review-next"),
    path("review/tasks/<id:task_id>/", views.review_task, name="review-task"),
    path("review/tasks/<id:task_id>/answer/", views.review_answer_view, name="review-answer"),
    path("review/tasks/<id:task_id>/skip/", views.review_skip, name="review-skip"),
    path("review/tasks/<id:task_id>/stop/", views.review_stop, name="review-stop"),
    path("review/tasks/<id:task_id>/lease/", views.review_lease, name="review-lease"),
    path("review/undo/", views.review_undo_view, name="review-undo"),
    path("review/team/", views.team, name="review-team"),
    path("cases/", views_case.case_search, name="case-search"),
    path("cases/<id:case_id>/", views_case.case_page, name="case-page"),
    path("cases/<id:case_id>/image/", views.case_image, name="case-image"),
    path("deployments/new/", views_onboarding.deployment_new, name="deployment-new"),
    path("deployments/<slug:slug>/rollout/", rollout_views.rollout_page, name="rollout"),
    path("deployments/<slug:slug>/report/", rollout_views.report_page, name="report"),
    path("", include("rollout.urls")),
    path("api/v1/cases/", api.CasesApi.as_view(), name="api-cases"),
    path("api/v1/cases/batch/", api_batch.CaseBatchApi.as_view(), name="api-cases-batch"),
    path("api/v1/cases/<id:case_id>/", api.CaseDetailApi.as_view(), name="api-case-detail"),
    path("api/v1/deployments/", api_onboarding.DeploymentsApi.as_view(),
         name="api-deployments"),
    path("api/v1/webhooks/", api_webhooks.WebhookEndpointsApi.as_view(), name="api-webhooks"),
    path("api/v1/webhooks/<id:endpoint_id>/", api_webhooks.WebhookEndpointApi.as_view(),
         name="api-webhook-detail"),
    path("api/v1/webhooks/<id:endpoint_id>/rotate-secret/",
         api_webhooks.WebhookSecretRotateApi.as_view(), name="api-webhook-rotate-secret"),
    path("api/v1/webhooks/<id:endpoint_id>/ping/", api_webhooks.WebhookPingApi.as_view(),
         name="api-webhook-ping"),
    path("api/v1/webhooks/<id:endpoint_id>/deliveries/",
         api_webhooks.WebhookDeliveriesApi.as_view(), name="api-webhook-deliveries"),
    path("api/v1/webhooks/<id:endpoint_id>/deliveries/<id:delivery_id>/",
         api_webhooks.WebhookDeliveryApi.as_view(), name="api-webhook-delivery"),
    path("api/v1/webhooks/<id:endpoint_id>/deliveries/<id:delivery_id>/redeliver/",
         api_webhooks.WebhookRedeliverApi.as_view(), name="api-webhook-redeliver"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script from its own URL, not inline.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema",
                                                          template_name="api/swagger_ui.html"),
         name="api-docs"),
    # ReDoc styles its elements with <style> blocks it writes at run time (styled-components)
    # and searches in a worker it starts from a blob: URL: this page alone allows both.
    # Scripts stay as strict as everywhere.
    path("api/redoc/", csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
        SpectacularRedocView.as_view(url_name="api-schema", template_name="api/redoc.html")),
         name="api-redoc"),
    path("", include("inference.urls")),
    path("admin/", admin.site.urls),
]
