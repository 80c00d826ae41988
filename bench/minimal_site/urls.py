"""The project's URLs and, first, `POST /bench/minimal/cases/`: the least a submission can do.

It reads the same multipart form as `POST /api/v1/cases/`, saves the image with the default
storage and inserts one Case row, and nothing else: no authentication, throttling, validation,
decoding, hashing or prediction job. The image's dimensions come from its header (no decode),
since a Case row needs them."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import cache

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from PIL import Image

from reviewplatform.models import Case, Region
from reviewplatform.urls import urlpatterns as project_urlpatterns


@cache
def _row_ids(deployment: str, region: str) -> tuple[int, int, int]:
    """(deployment, region, submitter) ids, looked up once per process."""
    found = Region.objects.values_list("deployment_id", "id").get(
        deployment__slug=deployment, code=region)
    submitter = User.objects.values_list("id", flat=True).get(
        username=settings.MINIMAL_SUBMITTER)
    return found[0], found[1], submitter


@csrf_exempt
@require_POST
def case_store(request: HttpRequest) -> JsonResponse:
    form, upload = request.POST, request.FILES["image"]
    deployment_id, region_id, submitter_id = _row_ids(form["deployment"], form["region"])
    width, height = Image.open(upload).size
    upload.seek(0)
    name = default_storage.save(f"cases/minimal/{uuid.uuid4().hex}.jpg", upload)
    case = Case.objects.create(
        deployment_id=deployment_id, region_id=region_id, external_id=form["external_id"],
        image=name, image_sha256="", width=width, height=height,
        captured_at=datetime.fromisoformat(form["captured_at"]), submitted_by_id=submitter_id)
    return JsonResponse({"id": case.pk}, status=201)


urlpatterns = [
    path("bench/minimal/cases/", case_store),
    *project_urlpatterns,
]
