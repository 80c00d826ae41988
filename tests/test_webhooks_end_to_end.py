"""Webhooks on real processes: a case submitted over HTTP is predicted by a worker, queued for
review and decided by a reviewer's answer on the page, and a webhooks worker (threads, its own
queue) tells the client's receiver of each step, signed; a webhooks worker killed while a
receiver holds its request loses nothing, and the event arrives again under the same id."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import pytest
import requests
from django.test import Client

from review.services import review_claim_next
from reviewplatform.models import Case, CaseEvent
from tests.conftest import CAPTURED_AT
from tests.test_end_to_end import celery_process, start_worker  # noqa: F401
from tests.webhook_receiver import Receiver, Reply
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = pytest.mark.e2e

# The claim on a delivery lapses after twice the timeout and ten seconds: short here, so that
# the delivery a killed worker held is sent again within the test.
TIMEOUT = "2"


@pytest.fixture
def start_webhooks_worker(celery_process):  # noqa: F811
    def start():
        return celery_process(
            "worker", "--queues", "webhooks", "--pool", "threads", "--concurrency", "4",
            "--without-mingle", "--without-gossip",
            "--hostname", f"webhooks-{uuid.uuid4().hex[:8]}@%h", ready="ready.",
            WEBHOOK_TIMEOUT_SECONDS=TIMEOUT)
    return start


def test_a_client_is_told_when_its_case_is_queued_and_decided_and_nothing_is_lost(
    live_server, start_worker, start_webhooks_worker, celery_process, champion,  # noqa: F811
    api_key, client_user, reviewer, digit_files, tmp_path,
):
    with Receiver() as receiver:
        endpoint = endpoint_create(owner=client_user, url=receiver.url(),
                                   event_types=["case.queued", "case.decided"])
        release = threading.Event()
        receiver.reply(Reply(status=200), Reply(hold=release))
        start_worker()
        webhooks_worker = start_webhooks_worker()
        # Beat drains the outbox every second (tests/settings_beat.py).
        celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"),
                       ready="beat: Starting", settings_module="tests.settings_beat",
                       WEBHOOK_TIMEOUT_SECONDS=TIMEOUT)

        with digit_files["7"][0].open("rb") as file:
            response = requests.post(
                f"{live_server.url}/api/v1/cases/", timeout=30,
                headers={"Authorization": f"Api-Key {api_key}"},
                data={"deployment": "digits", "region": "north", "external_id": "told-1",
                      "captured_at": CAPTURED_AT.isoformat()},
                files={"image": ("seven.png", file, "image/png")})
        assert response.status_code == 201, response.text
        case = Case.objects.get(pk=response.json()["id"])

        # Predicted in shadow: queued for review, and the receiver is told.
        receiver.wait_for(1, seconds=90)
        queued = receiver.requests[0].verify(endpoint.secret)
        assert queued["type"] == "case.queued"
        assert queued["data"]["case"] == {"id": case.pk, "external_id": "told-1",
                                          "deployment": "digits", "region": "north",
                                          "url": f"/api/v1/cases/{case.pk}/"}
        assert queued["data"]["queued"]["reason"] == "shadow"

        # A reviewer answers on the page: the case is decided, and the receiver told (it
        # holds this request).
        task = review_claim_next(reviewer=reviewer)
        assert task is not None and task.case_id == case.pk
        page = Client()
        page.force_login(reviewer)
        answered = page.post(f"/review/tasks/{task.pk}/answer/",
                             {"lease_token": str(task.lease_token), "answer": "7"})
        assert answered.status_code == 302
        receiver.wait_for(2, seconds=30)
        decided_event = CaseEvent.objects.get(case=case, type="case.decided")
        assert receiver.requests[1].headers["webhook-id"] == str(decided_event.uid)

        # The webhooks worker dies while the receiver holds its request; another starts.
        os.killpg(webhooks_worker.pid, signal.SIGKILL)
        webhooks_worker.wait(timeout=30)
        release.set()
        start_webhooks_worker()

        # Once the dead worker's claim lapses, the event is sent again, same id, same body.
        receiver.wait_for(3, seconds=90)
        again = receiver.requests[2]
        assert again.headers["webhook-id"] == str(decided_event.uid)
        assert again.body == receiver.requests[1].body
        decided = again.verify(endpoint.secret)
        assert decided["type"] == "case.decided"
        assert decided["data"]["decision"]["label"] == "7"
        assert decided["data"]["decision"]["source"] == "human"

        delivery = WebhookDelivery.objects.get(event=decided_event)
        deadline = time.monotonic() + 30
        while delivery.status != "succeeded" and time.monotonic() < deadline:
            time.sleep(0.2)
            delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == ("succeeded", 2)
        # A receiver that deduplicates on webhook-id saw each event once.
        assert {r.headers["webhook-id"] for r in receiver.requests} == {
            str(e.uid) for e in CaseEvent.objects.filter(case=case)}
        assert WebhookDelivery.objects.filter(endpoint=endpoint).count() == 2
