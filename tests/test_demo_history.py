"""The demo's simulated history (`demo_history`, run by `make demo`): seeded once through the
simulator and the real services, before the demo is set up; DEMO_HISTORY=0 seeds nothing.

The full two weeks (scenarios/demo_history.toml) take most of a minute: these tests run a
shorter history of the same shape."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from reviewplatform.demo import DEMO_DEPLOYMENT
from reviewplatform.models import Case, Deployment, Review
from rollout.models import PolicyVersion

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent

# A day and a half, starting at a fixed time of day (midnight UTC two days ago): how many
# shadow reviews the limited scope is published on must not depend on when the test runs.
START = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0,
                                                        microsecond=0)
SHORT = (ROOT / "scenarios" / "demo_history.toml").read_text().replace(
    "days = 14", f"days = 1.5\nstart = {START.isoformat()}").replace(
    "day = 7", "day = 0.9").replace(
    "day = 10\n", "day = 1.4\n").replace("start_day = 10.5", "start_day = 1.45").replace(
    "end_day = 13.7", "end_day = 1.45").replace("min_sample = 60", "min_sample = 30")


def _history(tmp_path: Path, trained_model) -> str:
    scenario = tmp_path / "history.toml"
    scenario.write_text(SHORT)
    out = io.StringIO()
    call_command("demo_history", model=trained_model.path, challenger=tmp_path / "none.pkl",
                 api_key_file=tmp_path / "api-key.txt", scenario=scenario,
                 images=trained_model.path.parent / "digits" / "test", stdout=out)
    return out.getvalue()


def test_it_seeds_the_history_once(tmp_path, trained_model):
    output = _history(tmp_path, trained_model)

    assert "Seeded the demo's simulated history" in output
    assert "model answers: stored" in output and "reconciles" in output
    deployment = Deployment.objects.get(slug=DEMO_DEPLOYMENT)
    cases = Case.objects.filter(deployment=deployment)
    assert cases.count() > 100
    assert not cases.exclude(external_id__startswith="history-").exists()
    # The deployment was set up at the history's start: its first policy version is older
    # than every case, and the scope was published on the evidence of the shadow reviews.
    first = PolicyVersion.objects.get(deployment=deployment, version=1)
    assert first.created_at <= cases.order_by("created_at").first().created_at
    limited = PolicyVersion.objects.get(deployment=deployment, version=2)
    assert limited.stage == "limited" and limited.evidence["passes"], output
    assert Review.objects.filter(reviewer__username__startswith="sim-reviewer-").exists()
    assert User.objects.get(username="sim-reviewer-1").first_name == "Simulated"
    assert (tmp_path / "api-key.txt").exists()  # the demo set up, as demo_prepare does
    counts = (cases.count(), Review.objects.count(), PolicyVersion.objects.count())

    again = _history(tmp_path, trained_model)

    assert "already there" in again
    assert (cases.count(), Review.objects.count(), PolicyVersion.objects.count()) == counts


def test_demo_history_0_seeds_nothing(tmp_path, trained_model, monkeypatch):
    monkeypatch.setenv("DEMO_HISTORY", "0")

    output = _history(tmp_path, trained_model)

    assert "DEMO_HISTORY=0" in output
    assert not Case.objects.exists() and not Deployment.objects.exists()
    assert not User.objects.filter(username__startswith="sim-").exists()
