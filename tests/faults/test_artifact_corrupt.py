"""The champion's artifact is damaged on disk (one byte flipped) and the worker restarts: the
artifact no longer matches its registered sha256, so it is never unpickled; the cases go to
reviewers with the reason (`model_failed`, and the prediction's error on the case page), and
the models page and an alert to the admins say so."""

from __future__ import annotations

import html
import signal
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from inference.models import Prediction
from reviewplatform.intake import case_intake
from reviewplatform.models import Case, ReviewTask
from tests.conftest import CAPTURED_AT

from .reconcile import reconcile

pytestmark = pytest.mark.faults
CASES = 100  # before the damage, and as many after it


def submit(champion, client_user, images: list[bytes], prefix: str) -> list[str]:
    ids = [f"{prefix}-{n}" for n in range(CASES)]
    for n, external_id in enumerate(ids):
        case_intake(deployment=champion.deployment, region_code="north",
                    image=SimpleUploadedFile(f"{n}.png", images[n % len(images)], "image/png"),
                    captured_at=CAPTURED_AT, external_id=external_id, submitted_by=client_user)
    return ids


def routed(platform, ids: list[str]) -> None:
    waiting = Case.objects.filter(external_id__in=ids, status=Case.Status.RECEIVED)
    deadline = time.monotonic() + 180
    while waiting.exists():
        assert time.monotonic() < deadline, f"{waiting.count()} cases wait:\n{platform.logs()}"
        time.sleep(0.5)


def test_a_damaged_champion_sends_cases_to_reviewers_and_says_so(
        platform, champion, model_decides, client_user, admin_user, digit_images,
        faults_record):
    alerts = {"ROLLOUT_ALERT_EMAILS": "ops@example.com"}
    platform.start("worker", "beat", **alerts)
    healthy = submit(champion, client_user, digit_images, "healthy")
    routed(platform, healthy)
    assert not Prediction.objects.filter(status="failed").exists()

    path = Path(champion.artifact.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    platform.kill("worker", signal.SIGTERM)
    platform.start("worker", **alerts)
    damaged = submit(champion, client_user, digit_images, "damaged")
    routed(platform, damaged)

    cases = Case.objects.filter(external_id__in=damaged)
    assert cases.filter(status=Case.Status.IN_REVIEW).count() == CASES
    reasons = set(ReviewTask.objects.filter(case__in=cases).values_list("reason", flat=True))
    assert reasons == {ReviewTask.Reason.MODEL_FAILED}
    errors = set(Prediction.objects.filter(case__in=cases).values_list("error", flat=True))
    assert len(errors) == 1 and "damaged or was replaced" in errors.pop()

    client = Client()
    client.force_login(admin_user)
    page = html.unescape(client.get("/deployments/digits/models/").content.decode())
    assert "failing:" in page and "damaged or was replaced" in page
    case_page = html.unescape(client.get(f"/cases/{cases.first().pk}/").content.decode())
    assert "damaged or was replaced" in case_page
    deadline = time.monotonic() + 60
    subject = "model version champion (champion) of Handwritten digits is failing"
    while subject not in " ".join(platform.log("worker").read_text().split()):  # mail folds
        assert time.monotonic() < deadline, f"no alert:\n{platform.logs()}"
        time.sleep(0.5)

    faults_record(reconcile(
        fault="champion's artifact damaged on disk", deployment=champion.deployment,
        external_ids=healthy + damaged,
        notes=[f"{CASES} cases before the damage (predicted), {CASES} after it: all to "
               "reviewers as model_failed; the models page and the alert say so"]))
