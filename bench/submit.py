"""Case submission: the API end to end against the bare write it wraps.

baseline: `Case` rows and image files written directly (no HTTP, no validation);
platform: `POST /api/v1/cases/` through Django and DRF with an API key (validation, decode,
storage, the row, the prediction job queued after commit). Both on the same database in one run.
Writes bench/results/submit.json: baseline_cases_per_s, api_cases_per_s, ratio_api_vs_baseline.
"""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime

from PIL import Image

from bench.harness import django_test_database, results_write

N = 300


def png(i: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (i % 256, (i * 7) % 256, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def main() -> None:
    with django_test_database():
        from django.contrib.auth.models import Group, User
        from django.core.files.base import ContentFile
        from rest_framework.test import APIClient

        from reviewplatform.models import Case
        from reviewplatform.services import api_key_create
        from rollout.services import deployment_create

        client_user = User.objects.create_user("bench-client")
        client_user.groups.set(Group.objects.filter(name="api client"))
        deployment = deployment_create(slug="bench", name="bench", labels=["a", "b"],
                                       regions=[("north", "North", "Europe/Oslo")], actor=None)
        region = deployment.regions.get()
        images = [png(i) for i in range(N)]
        captured = datetime(2026, 5, 1, 12, tzinfo=UTC)

        started = time.perf_counter()
        for i, data in enumerate(images):
            case = Case(deployment=deployment, region=region, external_id=f"direct-{i}",
                        captured_at=captured, submitted_by=client_user, image_sha256="0" * 64,
                        width=64, height=64)
            case.image.save(f"direct-{i}.png", ContentFile(data), save=False)
            case.width = case.height = 64
            case.save()
        baseline = N / (time.perf_counter() - started)

        api = APIClient()
        key = api_key_create(user=client_user, name="bench", deployments=[deployment])[1]
        api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        def post(i: int, data: bytes) -> None:
            response = api.post("/api/v1/cases/", {
                "deployment": "bench", "region": "north", "external_id": f"api-{i}",
                "captured_at": "2026-05-01T14:00:00+02:00",
                "image": ContentFile(data, name=f"api-{i}.png")}, format="multipart")
            assert response.status_code == 201, response.content

        for i in range(20):  # warm-up: first-request imports and connections
            post(N + i, images[i])
        started = time.perf_counter()
        for i, data in enumerate(images):
            post(i, data)
        api_rate = N / (time.perf_counter() - started)
        results_write("submit", {
            "baseline_cases_per_s": round(baseline, 1),
            "api_cases_per_s": round(api_rate, 1),
            "ratio_api_vs_baseline": round(api_rate / baseline, 3),
        })


if __name__ == "__main__":
    main()
