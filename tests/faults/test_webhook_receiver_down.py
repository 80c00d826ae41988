"""A client's webhook receiver is down for an hour (a simulated clock drives the sender):
decisions keep coming, every attempt meanwhile fails to connect and backs off; once the
receiver is back, every delivery arrives, none is lost, and a receiver that deduplicates on
the event id (`webhook-id`) accepts each event exactly once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from reviewplatform.models import CaseEvent
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures
from tests.webhook_receiver import *  # noqa: F403 - the receiver and its fixtures
from tests.webhook_receiver import Receiver
from webhooks.delivery import drain
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

from .reconcile import reconcile

pytestmark = pytest.mark.faults
BEFORE, DURING = 40, 80  # decisions before the receiver goes down, and while it is down
STEP = timedelta(seconds=30)  # the simulated time between two drains


def test_a_receiver_down_for_an_hour_gets_every_event_once_when_it_is_back(
        route, deployment, client_user, faults_record):
    clock = [timezone.now()]

    def sender() -> object:
        return drain(now=lambda: clock[0])

    with Receiver() as up:
        port = up.server.server_address[1]
        endpoint = endpoint_create(owner=client_user, url=up.url("/hook"),
                                   event_types=["case.decided"])
        cases = [route(str(n % 10)) for n in range(BEFORE)]
        sender()
        assert len(up.requests) == BEFORE
    delivered_before = list(up.requests)

    # Down: nothing listens on the port. Decisions keep coming during the hour.
    down_until = clock[0] + timedelta(hours=1)
    attempts_refused = 0
    while clock[0] < down_until:
        if len(cases) < BEFORE + DURING:
            cases += [route(str(n % 10)) for n in range(4)]
        result = sender()
        attempts_refused += result.sent
        assert result.succeeded == 0 and not result.failed
        clock[0] += STEP
    assert len(cases) == BEFORE + DURING
    pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING)
    assert pending.count() == DURING
    assert attempts_refused > DURING  # each retried, backing off

    # Back up on the same port: the sender resumes as each delivery's backoff ends.
    with Receiver(port=port) as back:
        resumed_by = clock[0] + timedelta(hours=2)
        while pending.exists():
            assert clock[0] < resumed_by, f"{pending.count()} deliveries still pending"
            sender()
            clock[0] += STEP
        clock[0] += timedelta(hours=2)
        sender()  # nothing more to send, however late
    received = delivered_before + back.requests

    events = {str(uid) for uid in CaseEvent.objects.filter(
        type=CaseEvent.Type.DECIDED).values_list("uid", flat=True)}
    ids = [r.headers["webhook-id"] for r in received]
    assert set(ids) == events  # none lost
    assert len(ids) == len(set(ids))  # none sent twice once accepted
    for r in received:
        r.verify(endpoint.secret)
    assert not WebhookDelivery.objects.exclude(status=WebhookDelivery.Status.SUCCEEDED).exists()
    tally = faults_record(reconcile(fault="webhook receiver down for an hour",
                                    deployment=deployment,
                                    external_ids=[case.external_id for case in cases]))
    assert tally.decided == BEFORE + DURING
