"""Model versions of a deployment: how each does, register an artifact, promote, retire."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import cast

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from reviewplatform.errors import ServiceError
from reviewplatform.models import Deployment

from .models import ModelVersion, ReferenceImage
from .permissions import VIEW_PERM, is_model_admin, may_see_reference_images, model_admin_required
from .selectors import model_version_events, model_versions_summary
from .services import model_version_promote, model_version_register, model_version_set_active

MAX_ARTIFACT_BYTES = 2 * 1024**3


class RegisterForm(forms.Form):
    artifact = forms.FileField(help_text="the file written by learn.export()")
    name = forms.SlugField(max_length=100)
    champion = forms.BooleanField(required=False)
    notes = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=2000)


def _page(request: HttpRequest, deployment: Deployment, form: RegisterForm | None = None,
          status: int = 200) -> HttpResponse:
    return render(request, "inference/models.html", {
        "deployment": deployment,
        "summary": model_versions_summary(deployment=deployment),
        "events": model_version_events(deployment=deployment),
        "form": form or RegisterForm(),
        "can_register": is_model_admin(request.user),
    }, status=status)


@require_GET
@login_required
@permission_required(VIEW_PERM, raise_exception=True)
def models_page(request: HttpRequest, slug: str) -> HttpResponse:
    return _page(request, get_object_or_404(Deployment, slug=slug))


@require_POST
@model_admin_required
def model_register(request: HttpRequest, slug: str) -> HttpResponse:
    """Upload an exported learner. It is a pickle: only staff with the register permission."""
    deployment = get_object_or_404(Deployment, slug=slug)
    form = RegisterForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, deployment, form, status=400)
    upload = form.cleaned_data["artifact"]
    if upload.size > MAX_ARTIFACT_BYTES:
        form.add_error("artifact", "the file is larger than 2 GiB")
        return _page(request, deployment, form, status=400)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.pkl"
        with path.open("wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        try:
            version = model_version_register(
                deployment=deployment, path=path, name=form.cleaned_data["name"],
                champion=form.cleaned_data["champion"], notes=form.cleaned_data["notes"],
                actor=cast(User, request.user))
        except ServiceError as exc:
            form.add_error(None, exc.message)
            return _page(request, deployment, form, status=exc.status_code)
    messages.success(request, f"Registered {version.name}.")
    return redirect("models", slug=slug)


def _version_action(request: HttpRequest, version_id: int) -> tuple[ModelVersion, str | None]:
    version = get_object_or_404(ModelVersion.objects.select_related("deployment"),
                                pk=version_id)
    form = ReasonForm(request.POST)
    return version, (form.cleaned_data["reason"] if form.is_valid() else None)


@require_POST
@model_admin_required
def model_promote(request: HttpRequest, version_id: int) -> HttpResponse:
    version, reason = _version_action(request, version_id)
    if reason is None:
        messages.error(request, f"Promoting {version.name} needs a reason: nothing changed.")
        return _page(request, version.deployment, status=400)
    try:
        model_version_promote(version=version, actor=cast(User, request.user), reason=reason)
        messages.success(request, f"{version.name} is now the champion.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("models", slug=version.deployment.slug)


@require_POST
@model_admin_required
def model_set_active(request: HttpRequest, version_id: int) -> HttpResponse:
    version, reason = _version_action(request, version_id)
    active = request.POST.get("active")
    if reason is None or active not in {"0", "1"}:
        messages.error(request, f"Retiring or reactivating {version.name} needs a reason "
                                "(and active=0 or 1): nothing changed.")
        return _page(request, version.deployment, status=400)
    try:
        model_version_set_active(version=version, active=active == "1",
                                 actor=cast(User, request.user), reason=reason)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("models", slug=version.deployment.slug)


@require_GET
@login_required
def reference_image(request: HttpRequest, image_id: int) -> HttpResponseBase:
    """A reference image (the disagreements gallery shows a case's nearest ones)."""
    if not may_see_reference_images(request.user):
        raise PermissionDenied
    image = get_object_or_404(ReferenceImage, pk=image_id)
    try:
        file = image.image.open("rb")
    except FileNotFoundError as exc:
        raise Http404("the reference image's file is missing") from exc
    response = FileResponse(file)
    response["Cache-Control"] = "private, max-age=3600"
    return response
