"""Sending webhooks to a receiver on 127.0.0.1: signed the Standard Webhooks way (checked with
the standardwebhooks package), retried with backoff, honouring Retry-After and 410, never
held up by a slow receiver, and never lost by a sender that dies after its claim."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from reviewplatform.instants import instant_text
from reviewplatform.models import CaseEvent
from reviewplatform.tasks import webhooks_drain
from tests.conftest import _user
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures
from tests.webhook_receiver import *  # noqa: F403 - the receiver and its fixtures
from tests.webhook_receiver import Reply
from webhooks.delivery import (
    backoff_seconds,
    deliveries_claim,
    drain,
    events_fan_out,
    outcome_record,
    send,
)
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create


def later(seconds: float):
    return lambda: timezone.now() + timedelta(seconds=seconds)


def test_it_sends_a_decision_signed_with_the_endpoints_secret(route, endpoint, receiver):
    case = route("7")

    result = drain()

    assert (result.fanned_out, result.sent, result.succeeded) == (1, 1, 1)
    (got,) = receiver.requests
    payload = got.verify(endpoint.secret)  # raises unless the signature verifies
    event = CaseEvent.objects.get(case=case)
    assert got.headers["webhook-id"] == str(event.uid)
    assert got.headers["content-type"] == "application/json"
    assert payload == {
        "type": "case.decided", "timestamp": instant_text(event.created_at),
        "data": {"case": {"id": case.pk, "external_id": case.external_id,
                          "deployment": "digits", "region": "north",
                          "url": f"/api/v1/cases/{case.pk}/"},
                 "decision": {"label": "7", "source": "model",
                              "decided_at": instant_text(case.decision.decided_at)}}}
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "succeeded", 1, 200)
    assert got.body == delivery.body.encode()
    assert [(a.status_code, a.error) for a in delivery.attempt_log.all()] == [(200, "")]
    # Nothing more to send.
    assert drain().sent == 0
    assert len(receiver.requests) == 1


def test_a_signature_with_another_secret_does_not_verify(route, endpoint, receiver):
    route("7")
    drain()

    (got,) = receiver.requests
    other = endpoint_create(owner=endpoint.owner, url=receiver.url("/other"),
                            event_types=["case.queued"])
    with pytest.raises(Exception, match="No matching signature"):
        got.verify(other.secret)


def test_it_sends_each_event_only_to_the_endpoints_subscribed_to_it(
        route, client_user, receiver, endpoint):
    queued_too = endpoint_create(owner=client_user, url=receiver.url("/both"),
                                 event_types=["case.queued", "case.decided"])
    off = endpoint_create(owner=client_user, url=receiver.url("/off"),
                          event_types=["case.decided"])
    off.is_active = False
    off.save()
    stranger = _user("other-client", "api client")
    endpoint_create(owner=stranger, url=receiver.url("/stranger"),
                    event_types=["case.queued", "case.decided"])

    decided, queued = route("3"), route(None)
    drain()

    sent = sorted((r.path, r.json()["type"], r.json()["data"]["case"]["id"])
                  for r in receiver.requests)
    assert sent == sorted([("/hook", "case.decided", decided.pk),
                           ("/both", "case.decided", decided.pk),
                           ("/both", "case.queued", queued.pk)])
    for got in receiver.to("/both"):
        got.verify(queued_too.secret)
    assert CaseEvent.objects.filter(dispatched_at__isnull=True).count() == 0


def test_it_retries_after_a_500_with_the_same_id_and_a_fresh_signature(route, endpoint,
                                                                      receiver):
    receiver.reply(Reply(status=500), Reply(status=200))
    route("7")
    before = timezone.now()

    assert drain().succeeded == 0
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "pending", 1, 500)
    assert delivery.last_error == "answered 500"
    # The first wait: WEBHOOK_BACKOFF_FIRST_SECONDS (5) with ±20% jitter.
    wait = (delivery.next_attempt_at - before).total_seconds()
    assert 4.0 <= wait <= 6.5
    assert drain().sent == 0  # not due yet

    assert drain(now=later(7)).succeeded == 1

    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    first.verify(endpoint.secret)
    second.verify(endpoint.secret)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert [a.status_code for a in delivery.attempt_log.all()] == [500, 200]


def test_it_backs_off_doubling_up_to_the_longest_wait(settings):
    settings.WEBHOOK_BACKOFF_FIRST_SECONDS = 5
    settings.WEBHOOK_BACKOFF_MAX_SECONDS = 3600
    for attempt, base in ((1, 5), (2, 10), (5, 80), (10, 2560), (11, 3600), (30, 3600)):
        waits = [backoff_seconds(attempt) for _ in range(50)]
        assert all(0.8 * base <= w <= 1.2 * base for w in waits), (attempt, waits[:3])
        assert len(set(waits)) > 1  # jittered


def test_it_waits_as_long_as_retry_after_asks(route, endpoint, receiver):
    receiver.reply(Reply(status=429, headers={"Retry-After": "120"}))
    route("7")
    before = timezone.now()

    drain()

    delivery = WebhookDelivery.objects.get()
    assert delivery.last_status_code == 429
    assert 119 <= (delivery.next_attempt_at - before).total_seconds() <= 122
    assert drain(now=later(60)).sent == 0
    assert drain(now=later(125)).succeeded == 1


def test_it_backs_off_as_usual_when_retry_after_is_no_whole_number(route, endpoint, receiver,
                                                                   settings):
    settings.WEBHOOK_BACKOFF_FIRST_SECONDS = 5
    # "²" is a digit to str.isdigit(), not to float().
    receiver.reply(Reply(status=429, headers={"Retry-After": "²"}))
    route("7")
    before = timezone.now()

    drain()

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "pending", 1, 429)
    assert 3 <= (delivery.next_attempt_at - before).total_seconds() <= 7


def test_a_410_turns_the_endpoint_off_and_its_deliveries_wait(route, endpoint, receiver):
    receiver.reply(Reply(status=410))
    route("7")

    drain()

    endpoint.refresh_from_db()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("failed", 410)
    assert not endpoint.is_active
    assert "410 Gone" in endpoint.disabled_reason
    route("8")
    assert drain().sent == 0  # an endpoint turned off is not sent to, nor fanned out to
    assert len(receiver.requests) == 1


def test_it_gives_up_when_the_retry_window_ends_and_tells_the_admins(route, endpoint,
                                                                    receiver, settings):
    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]
    settings.ROLLOUT_ALERT_WEBHOOK_URL = ""
    receiver.default = Reply(status=503)
    route("7")
    drain()
    delivery = WebhookDelivery.objects.get()
    # The window closes before the next wait would end.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        retry_until=timezone.now() + timedelta(seconds=5), next_attempt_at=timezone.now())

    assert webhooks_drain() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "failed", 2, 503)
    assert delivery.finished_at is not None
    (email,) = mail.outbox
    assert email.subject == "[rollout] 1 webhook delivery(ies) failed for good"
    assert f"Deliveries: {delivery.pk}." in email.body
    assert drain(now=later(3600)).sent == 0


def test_a_slow_receiver_holds_up_no_other_delivery(route, client_user, receiver, settings):
    settings.WEBHOOK_TIMEOUT_SECONDS = 1
    release = threading.Event()
    slow = endpoint_create(owner=client_user, url=receiver.url("/slow"),
                           event_types=["case.decided"])
    fast = endpoint_create(owner=client_user, url=receiver.url("/fast"),
                           event_types=["case.decided"])
    receiver.reply(Reply(hold=release))  # the first request to arrive hangs
    try:
        route("7")
        result = drain()
    finally:
        release.set()

    assert result.sent == 2
    by_endpoint = {d.endpoint_id: d for d in WebhookDelivery.objects.all()}
    held_path = receiver.requests[0].path
    held, other = (slow, fast) if held_path == "/slow" else (fast, slow)
    assert by_endpoint[other.pk].status == "succeeded"
    assert (by_endpoint[held.pk].status, by_endpoint[held.pk].last_error) == (
        "pending", "no answer within 1 s")
    # The other endpoint was answered while the first request still hung.
    answered_other = receiver.requests[1]
    assert answered_other.answered_at > 0
    assert receiver.requests[0].answered_at == 0 or \
        receiver.requests[0].answered_at > answered_other.answered_at


def test_a_sender_that_dies_after_its_claim_only_delays_the_delivery(route, endpoint,
                                                                     receiver, settings):
    route("7")
    events_fan_out(now=timezone.now())
    (claim,) = deliveries_claim(now=timezone.now(), limit=10)
    # ... and the sender is killed here, before sending.

    assert drain().sent == 0  # claimed: not due for anyone else
    lapsed = 2 * settings.WEBHOOK_TIMEOUT_SECONDS + 11
    assert drain(now=later(lapsed)).succeeded == 1

    (got,) = receiver.requests
    got.verify(endpoint.secret)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    assert got.headers["webhook-id"] == claim.msg_id


def test_it_refuses_to_send_to_a_private_address_unless_allowed(route, endpoint, receiver,
                                                               settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    route("7")

    drain()

    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == []
    assert delivery.status == "pending"
    assert delivery.last_error == ("127.0.0.1 is a private address: webhooks go to public "
                                   "addresses only")


def test_an_endpoint_stored_with_a_port_out_of_range_fails_its_attempt_with_why(
        route, endpoint, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(url="http://hooks.example.org:99999/")
    route("7")

    drain()

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "pending"
    assert delivery.last_error == ("the port of http://hooks.example.org:99999/ is not one "
                                   "from 1 to 65535")


def test_an_endpoint_deleted_while_its_delivery_is_sent_is_no_error(route, endpoint,
                                                                   receiver):
    route("7")
    events_fan_out(now=timezone.now())
    (claim,) = deliveries_claim(now=timezone.now(), limit=10)
    outcome = send(claim)
    endpoint.delete()

    assert outcome_record(claim, outcome, now=timezone.now()) is None
    assert not WebhookDelivery.objects.exists()
    assert len(receiver.requests) == 1


def test_a_lapsed_claim_answered_late_changes_nothing_but_the_log(route, endpoint, receiver,
                                                                  settings):
    receiver.reply(Reply(status=500))
    route("7")
    events_fan_out(now=timezone.now())
    (late,) = deliveries_claim(now=timezone.now(), limit=10)
    lapsed = timezone.now() + timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_SECONDS + 11)
    (current,) = deliveries_claim(now=lapsed, limit=10)
    assert outcome_record(current, send(current), now=lapsed) == "pending"  # the 500

    assert outcome_record(late, send(late), now=timezone.now()) is None  # the 200, too late

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (
        "pending", 2, 500)
    assert sorted(a.status_code for a in delivery.attempt_log.all()) == [200, 500]
