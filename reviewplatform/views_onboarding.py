"""The staff page that onboards a team's own model (the same service as the command and the
staff API): a form, and on success the new deployment with its API key, shown this once."""

from __future__ import annotations

import tempfile
from typing import cast

from django import forms
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from inference.permissions import model_admin_required

from .api_onboarding import learner_file
from .errors import ServiceError
from .onboarding import RegionIn, deployment_onboard


class OnboardForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="what people call it: Bear species")
    slug = forms.SlugField(max_length=49, help_text="its short name in URLs and the API: bears")
    learner = forms.FileField(help_text="the file written by learn.export()")
    reference = forms.FileField(help_text=(
        "a zip of one folder per label with images like the training images (at least 10; "
        "your training folder, zipped, will do)"))
    regions = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "north, North, Europe/Oslo"}),
        help_text="one per line: code, name, time zone (an IANA name)")
    labels = forms.CharField(required=False, help_text=(
        "the labels in the order reviewers see them, comma-separated; empty: the learner's "
        "own order"))
    client = forms.CharField(max_length=150, help_text=(
        "the API client account that will submit cases (created if new)"))

    def clean_regions(self) -> list[RegionIn]:
        regions = []
        for n, line in enumerate(self.cleaned_data["regions"].splitlines(), start=1):
            if not line.strip():
                continue
            parts = [part.strip() for part in line.split(",")]
            if len(parts) != 3:
                raise forms.ValidationError(
                    f"line {n}: write code, name, time zone (north, North, Europe/Oslo)")
            regions.append(RegionIn(code=parts[0], name=parts[1], timezone=parts[2]))
        return regions

    def clean_labels(self) -> list[str] | None:
        text = self.cleaned_data["labels"].strip()
        return [label.strip() for label in text.split(",")] if text else None


@require_http_methods(["GET", "POST"])
@model_admin_required
def deployment_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "onboarding/new.html", {"form": OnboardForm()})
    form = OnboardForm(request.POST, request.FILES)
    if not form.is_valid():
        return render(request, "onboarding/new.html", {"form": form}, status=400)
    values = form.cleaned_data
    try:
        with tempfile.TemporaryDirectory(prefix="onboard-") as folder:
            done = deployment_onboard(
                slug=values["slug"], name=values["name"],
                learner=learner_file(values["learner"], folder), regions=values["regions"],
                reference=values["reference"], client=values["client"],
                labels=values["labels"], actor=cast(User, request.user))
    except ServiceError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return render(request, "onboarding/new.html", {"form": form},
                      status=exc.status_code)
    return render(request, "onboarding/done.html", {"done": done}, status=201)
