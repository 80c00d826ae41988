from django.urls import path

from . import views

urlpatterns = [
    path("deployments/<slug:slug>/models/", views.models_page, name="models"),
    path("deployments/<slug:slug>/models/register/", views.model_register,
         name="model-register"),
    path("models/<id:version_id>/promote/", views.model_promote, name="model-promote"),
    path("models/<id:version_id>/active/", views.model_set_active, name="model-set-active"),
    path("references/<id:image_id>/image/", views.reference_image, name="reference-image"),
]
