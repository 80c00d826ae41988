"""A worker is killed (SIGKILL, the worker and its pool) in the middle of a batch of 500
cases; another is started. The dead worker's claims go stale and the new worker takes them
(beat's sweep queues again any case whose job was lost): each case is predicted once per model
version and routed once."""

from __future__ import annotations

import re
import signal
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from inference.models import InferenceClaim, Prediction
from reviewplatform.intake import case_intake
from reviewplatform.models import Case
from tests.conftest import CAPTURED_AT

from .reconcile import reconcile

pytestmark = pytest.mark.faults
CASES = 500
BATCH = 32


def test_a_worker_killed_mid_batch_loses_no_case(platform, champion, challenger, model_decides,
                                                 client_user, digit_images, faults_record):
    platform.start("worker", "beat", INFERENCE_BATCH_SIZE=str(BATCH))
    ids = [f"kill-{n}" for n in range(CASES)]
    for n, external_id in enumerate(ids):
        case_intake(deployment=champion.deployment, region_code="north",
                    image=SimpleUploadedFile(f"{n}.png", digit_images[n % len(digit_images)],
                                             "image/png"),
                    captured_at=CAPTURED_AT, external_id=external_id, submitted_by=client_user)

    # Kill once a batch has its champion's predictions stored and the challenger is
    # predicting it: that batch's claims are held, half of its predictions written.
    deadline = time.monotonic() + 180
    while not ((predicted := Prediction.objects.count()) > 2 * BATCH
               and predicted % (2 * BATCH) == BATCH):
        assert predicted < 2 * CASES - BATCH, "the worker finished before the kill"
        assert time.monotonic() < deadline, f"no batch came:\n{platform.logs()}"
        time.sleep(0.005)
    platform.kill("worker", signal.SIGKILL)
    held = InferenceClaim.objects.count()
    waiting = Case.objects.filter(status=Case.Status.RECEIVED).count()
    assert held and 0 < waiting < CASES
    killed = (f"killed with {predicted} predictions stored, {held} claims held, "
              f"{waiting} cases waiting")

    platform.start("worker", INFERENCE_BATCH_SIZE=str(BATCH))
    deadline = time.monotonic() + 240
    while Case.objects.filter(status=Case.Status.RECEIVED).exists() \
            or InferenceClaim.objects.exists():
        assert time.monotonic() < deadline, f"cases were left:\n{platform.logs()}"
        time.sleep(0.5)

    # Their jobs may still be queued (a new worker takes the dead one's claims once stale),
    # or lost with it: beat's sweep queues those again.
    requeued = sum(int(n) for n in re.findall(
        r"re-queued (\d+) cases whose prediction job was lost",
        platform.log("worker").read_text()))
    tally = faults_record(reconcile(fault="worker SIGKILLed mid-batch",
                                    deployment=champion.deployment, external_ids=ids,
                                    notes=[killed, f"{requeued} re-queued by beat's sweep"]))
    assert tally.stored == CASES and tally.decided > 0
