"""The rollout simulator: scenario files checked before anything is written, and scenarios run
on a simulated clock through the platform's own services (case intake, the worker's path with
the simulated model's answers, the review queue, the evidence gate, the guardrails)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command

from inference.demo_model import DIGIT_LABELS, digits_write
from inference.models import ModelVersion
from reviewplatform.models import Case, CaseEvent, Decision, Review, ReviewTask
from reviewplatform.simulation import STORED, ScenarioError, scenario_load, simulate
from rollout.models import ChangeKind, PolicyVersion
from rollout.services import deployment_create

from .reports_factory import sim_model

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 5, 1, tzinfo=UTC)

SCENARIO = """
[scenario]
name = "short"
days = {days}
start = 2026-05-01T00:00:00Z
worker_seconds = 300
guardrail_minutes = 60

[deployment]
slug = "sim-digits"

[[regions]]
code = "north"
timezone = "Europe/Oslo"
cases_per_day = {north}

[[regions]]
code = "west"
timezone = "America/Los_Angeles"
cases_per_day = {west}

[model]
accuracy = 0.995
night_accuracy = 0.95

{drift}

[[reviewers]]
count = 2
accuracy = 0.995
seconds = [5, 20]

[[reviewers]]
name = "senior"
count = 1
accuracy = 1.0
senior = true

[[policy]]
day = {publish_day}
stage = "limited"
reason = "north and west by day"
audit_rate = {audit_rate}
guardrails = {{ min_sample = 50 }}
[[policy.rules]]
name = "daytime"
regions = ["north", "west"]
windows = [{{ start = "06:00", end = "20:00" }}]
"""


def _scenario(tmp_path: Path, *, days: float = 1, north: int = 80, west: int = 60,
              drift: str = "", publish_day: float = 0.75, audit_rate: float = 0.2,
              text: str | None = None) -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(text if text is not None else SCENARIO.format(
        days=days, north=north, west=west, drift=drift, publish_day=publish_day,
        audit_rate=audit_rate))
    return path


@pytest.fixture(scope="session")
def images(tmp_path_factory) -> list[Path]:
    return digits_write(tmp_path_factory.mktemp("digits"))["test"]


def _prepare(scenario):
    """The deployment made at the simulated start, with a champion whose learner never runs
    (the simulated model answers for it)."""
    admin = User.objects.create_user("sim-test-admin")
    deployment = deployment_create(
        slug=scenario.deployment_slug, name="Simulated digits", labels=DIGIT_LABELS,
        regions=[(r.code, r.name, r.timezone) for r in scenario.regions], actor=admin)
    sim_model(deployment, name="champion")
    return deployment


@pytest.mark.parametrize(("text", "message"), [
    ("days = 3", "days: unknown key (known: deployment, drift, model, policy, regions"),
    ('[deployment]\nslug = "x"', "scenario: missing"),
    ("[scenario\nname=1", "not valid TOML"),
    (SCENARIO.format(days=1, north=10, west=10, drift="", publish_day=0.5, audit_rate=2),
     "policy[0].audit_rate: must be from 0 to 1"),
    (SCENARIO.format(days=1, north=10, west=10, publish_day=0.5, audit_rate=0.1,
                     drift='[[drift]]\nregion = "south"\nstart_day = 0\naccuracy = 0.5'),
     "drift[0].region: unknown region 'south' (known: north, west)"),
    (SCENARIO.format(days=1, north=10, west=10, drift="", publish_day=0.5, audit_rate=0.1)
     .replace('regions = ["north", "west"]', 'regions = ["north", "nowhere"]'),
     "policy[0].rules[0].regions: unknown region 'nowhere'"),
    (SCENARIO.format(days=1, north=10, west=10, drift="", publish_day=0.5, audit_rate=0.1)
     .replace("Europe/Oslo", "Europe/Atlantis"), "regions[0].timezone: unknown time zone"),
    (SCENARIO.format(days=1, north=10, west=10, drift="", publish_day=0.5, audit_rate=0.1)
     .replace("accuracy = 0.995", "accuracy = 0.995\nprecision = 1"),
     "model.precision: unknown key"),
])
def test_it_refuses_a_bad_scenario_naming_the_key_and_writes_nothing(tmp_path, text, message):
    path = _scenario(tmp_path, text=text)
    with pytest.raises(ScenarioError, match=re.escape(message)) as error:
        scenario_load(path)
    assert str(path) in str(error.value)
    with pytest.raises(CommandError) as refused:
        call_command("simulate", str(path))
    assert str(refused.value) == str(error.value)
    assert not Case.objects.exists()
    assert not User.objects.filter(username__startswith="sim-").exists()


def test_the_example_scenarios_are_valid():
    for path in sorted((ROOT / "scenarios").glob("*.toml")):
        assert scenario_load(path).regions, path


def test_a_short_scenario_through_the_real_services_reconciles(tmp_path, images):
    summary = simulate(scenario_load(_scenario(tmp_path)), prepare=_prepare, images=images,
                       seed=3)
    print("\n".join(summary.lines()))

    cases = Case.objects.filter(external_id__startswith="sim-")
    assert summary.cases == cases.count() > 40
    assert summary.model_answers == STORED
    # Every case has one decision, or waits for one in the review queue.
    assert summary.reconciles
    assert Decision.objects.filter(case__in=cases).count() == sum(summary.decisions.values())
    assert set(summary.waiting) <= {Case.Status.IN_REVIEW}
    assert not cases.filter(status=Case.Status.RECEIVED).exists()
    # The shadow half went to reviewers; once the scope is published the model decides some.
    assert summary.decisions[Decision.Source.MODEL] > 0
    assert summary.decisions[Decision.Source.HUMAN] > 0
    assert ReviewTask.objects.filter(case__in=cases, reason=ReviewTask.Reason.SHADOW).exists()
    audits = ReviewTask.objects.filter(case__in=cases, reason=ReviewTask.Reason.AUDIT)
    assert summary.audits == audits.count() > 0
    assert summary.audits_answered == audits.filter(status=ReviewTask.Status.DONE).count()
    # The policy went through the evidence gate, its evidence kept on the version.
    published = PolicyVersion.objects.get(stage="limited")
    assert published.evidence["passes"] and published.author.username == "sim-admin"
    assert published.created_at == datetime(2026, 5, 1, 18, tzinfo=UTC)
    # Simulated time: the rows carry the simulated clock, not the machine's.
    first = cases.order_by("created_at").first()
    assert START <= first.created_at < datetime(2026, 5, 2, tzinfo=UTC)
    assert Review.objects.filter(case__in=cases).latest("created_at").created_at < datetime(
        2026, 5, 2, 0, 1, tzinfo=UTC)
    # Every decision told its client, as in production.
    assert CaseEvent.objects.filter(case__in=cases, type=CaseEvent.Type.DECIDED).count() == \
        sum(summary.decisions.values())
    # The reviewers are plainly simulated accounts that cannot log in.
    reviewer = User.objects.get(username="sim-reviewer-1")
    assert reviewer.first_name == "Simulated" and not reviewer.has_usable_password()
    assert sum(summary.reviewers.values()) == Review.objects.filter(case__in=cases).count()


def test_a_drift_pauses_only_the_drifting_cell_and_alerts(
        tmp_path, images, settings, django_capture_on_commit_callbacks):
    settings.ROLLOUT_ALERT_EMAILS = ["admins@example.org"]
    drift = ('[[drift]]\nregion = "west"\nstart_day = 1.2\naccuracy = 0.4\n'
             'confidence_wrong = [0.92, 0.99]')
    path = _scenario(tmp_path, days=2, north=60, west=90, drift=drift, audit_rate=0.5)
    with django_capture_on_commit_callbacks(execute=True):  # the alert goes after commit
        summary = simulate(scenario_load(path), prepare=_prepare, images=images, seed=1)
    print("\n".join(summary.lines()))

    assert [pause.cells for pause in summary.pauses] == [[("daytime", "west")]]
    pause = PolicyVersion.objects.get(kind=ChangeKind.GUARDRAIL)
    assert pause.author is None and pause.paused_cells == [["daytime", "west"]]
    assert datetime(2026, 5, 2, 4, 48, tzinfo=UTC) < pause.created_at < datetime(
        2026, 5, 3, tzinfo=UTC)
    assert summary.wrong_automated["west"] > summary.wrong_automated.get("north", 0)
    assert summary.reconciles
    [alert] = mail.outbox
    assert "guardrail paused automation" in alert.subject and "west" in alert.body
    # After the pause, west's cases in the cell go to reviewers.
    after = Case.objects.filter(created_at__gt=pause.created_at)
    assert not Decision.objects.filter(case__in=after, case__region__code="west",
                                       source="model").exists()
    assert ReviewTask.objects.filter(case__in=after, reason=ReviewTask.Reason.PAUSED,
                                     case__region__code="west").exists()


def test_the_command_makes_the_deployment_and_prints_what_happened(tmp_path, trained_model):
    short = (ROOT / "scenarios" / "drift_north.toml").read_text().replace(
        "days = 3", "days = 1").replace("day = 1\n", "day = 0.6\n").replace(
        "start_day = 1.8", "start_day = 0.8")
    path = _scenario(tmp_path, text=short)
    out = io.StringIO()

    call_command("simulate", str(path), "--seed", "2", "--model", str(trained_model.path),
                 "--images", str(trained_model.path.parent / "digits" / "test"), stdout=out)

    output = out.getvalue()
    assert f"model answers: {STORED}" in output
    assert "(reconciles)" in output and "guardrails: checked 96 times, every 15" in output
    champion = ModelVersion.objects.get(deployment__slug="sim-digits", is_champion=True)
    assert champion.name == "simulated-champion"
    assert Case.objects.filter(deployment__slug="sim-digits").count() == int(
        re.search(r"cases: (\d+)", output).group(1))


def test_the_fast_mode_runs_the_scenario_s_cells_through_the_statistics_alone():
    out = io.StringIO()

    call_command("simulate", str(ROOT / "scenarios" / "demo_history.toml"), "--fast",
                 "--runs", "40", "--seed", "3", stdout=out)

    output = out.getvalue()
    assert "fast mode: the guardrail's statistics alone, 40 runs per cell" in output
    lines = {line.split(" (")[0].strip(): line for line in output.splitlines()
             if line.startswith("  ")}
    assert set(lines) == {"north", "west"}  # the cells of the first automated policy
    assert "steady at 0.995): paused in 0.0% of runs" in lines["north"]
    assert "drift to 0.5 on day 3.5 after publishing): paused in 100.0% of runs" in lines["west"]
    assert not Case.objects.exists()  # no database writes


def test_the_fast_mode_refuses_a_scenario_without_automation(tmp_path):
    text = re.sub(r"\[\[policy\]\].*", "", (ROOT / "scenarios" / "demo_history.toml")
                  .read_text(), flags=re.S)
    path = tmp_path / "shadow.toml"
    path.write_text(text)

    with pytest.raises(CommandError, match="no policy automates anything"):
        call_command("simulate", str(path), "--fast", "--runs", "5")
    with pytest.raises(CommandError, match="--runs must be at least 1"):
        call_command("simulate", str(path), "--fast", "--runs", "0")
