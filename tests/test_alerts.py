"""Alerts to admins that cannot be delivered: a failing email or webhook is logged and never
undoes the change it reports."""

from __future__ import annotations

import logging
import socket
from datetime import timedelta

import pytest
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone

from rollout import guardrails
from rollout.models import ChangeKind, ScheduledChange
from rollout.selectors import policy_current
from rollout.services import policy_schedule, scheduled_changes_apply
from tests.reports_factory import sim_model
from tests.test_rollout_services import east_inputs_drift


class FailingEmailBackend(BaseEmailBackend):
    """A mail server that cannot be reached."""

    sent = 0

    def send_messages(self, email_messages):
        FailingEmailBackend.sent += len(email_messages)
        raise OSError("mail server unreachable")


def closed_port() -> int:
    """A local port nothing listens on: a connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def undeliverable(settings):
    """Alerts configured, with an email backend that raises and a webhook that refuses."""
    FailingEmailBackend.sent = 0
    settings.EMAIL_BACKEND = f"{__name__}.FailingEmailBackend"
    settings.ROLLOUT_ALERT_EMAILS = ["ops@example.com"]
    settings.ROLLOUT_ALERT_WEBHOOK_URL = f"http://127.0.0.1:{closed_port()}/alerts"
    settings.ROLLOUT_ALERT_WEBHOOK_SECRET = "s3cret"
    settings.ROLLOUT_ALERT_WEBHOOK_TIMEOUT = 2


def alert_failures(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "rollout.alerts" and record.levelno == logging.ERROR]


def test_a_guardrail_pause_stands_when_its_alert_cannot_be_delivered(
        deployment, client_user, undeliverable, caplog, django_capture_on_commit_callbacks):
    model = sim_model(deployment)
    east_inputs_drift(deployment, model, client_user)

    with caplog.at_level(logging.ERROR, logger="rollout.alerts"), \
            django_capture_on_commit_callbacks(execute=True) as callbacks:
        version = guardrails.guardrails_enforce(deployment=deployment)

    assert len(callbacks) == 1  # the alert was sent after the change committed
    current = policy_current(deployment_id=deployment.pk)
    assert version is not None and current.pk == version.pk
    assert (current.kind, current.paused_cells) == (ChangeKind.GUARDRAIL, [["full", "east"]])
    assert FailingEmailBackend.sent == 1  # the email was tried
    subject = f"{deployment.slug}: guardrail paused automation"
    assert alert_failures(caplog) == [f"rollout alert email failed: {subject}",
                                      f"rollout alert webhook failed: {subject}"]


def test_a_held_scheduled_change_stays_held_when_its_alert_cannot_be_delivered(
        deployment, admin_user, undeliverable, caplog, django_capture_on_commit_callbacks):
    now = timezone.now()
    change = policy_schedule(deployment=deployment, actor=admin_user, reason="open east",
                             effective_at=now + timedelta(hours=1), stage="limited",
                             rules=[{"name": "east", "regions": ["east"]}],
                             confidence_threshold=0.9, audit_rate=0.05, now=now)

    with caplog.at_level(logging.ERROR, logger="rollout.alerts"), \
            django_capture_on_commit_callbacks(execute=True) as callbacks:
        (applied,) = scheduled_changes_apply(now=now + timedelta(hours=2))

    assert len(callbacks) == 1
    change.refresh_from_db()
    assert applied.pk == change.pk
    assert change.status == ScheduledChange.Status.HELD
    assert change.status_note.startswith("held: ")
    assert policy_current(deployment_id=deployment.pk).version == 1  # nothing published
    assert FailingEmailBackend.sent == 1
    assert mail.outbox == []
    subject = f"{deployment.slug}: scheduled policy change held"
    assert alert_failures(caplog) == [f"rollout alert email failed: {subject}",
                                      f"rollout alert webhook failed: {subject}"]
