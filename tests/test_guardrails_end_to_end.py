"""A drift caught by the guardrail on real parts: PostgreSQL, Redis, a Celery worker process
that predicts with the real learner, and `celery beat` that runs the guardrail every second.

The model decides digits in north and west (a limited stage, one rule covering both regions,
20% audit rate). In north nothing changes: reviewers answer each audit with the image's true
label (its folder name). In west the model drifts: say its camera now films a different set of
digits that the model keeps reading as the old ones. The truth there is what reviewers say, and
they answer every audit with a label other than the model's decision. Beat's guardrail run sees
the disagreements pile up in west, pauses that cell alone in a new policy version, and the
worker alerts the admins by email; from then on west's cases go to reviewers while the model
still decides north's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from review.services import review_claim_next, review_submit
from reviewplatform.intake import case_intake
from reviewplatform.models import Case, Decision, ReviewTask
from rollout.models import ChangeKind, PolicyVersion
from rollout.services import policy_change
from tests.conftest import CAPTURED_AT
from tests.test_end_to_end import celery_process, start_worker  # noqa: F401

pytestmark = pytest.mark.e2e
RULE = "digits"
PER_REGION = 20


def _wait(condition, seconds: float, what: str, *logs: Path):
    """Poll `condition` until it returns something true; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {seconds:g} s:\n"
                        + "\n".join(log.read_text()[-4000:] for log in logs))
        time.sleep(0.2)
    return result


def _drifted(label: str, labels: list[str]) -> str:
    """West's reviewers' answer: never the label the model gave."""
    return labels[(labels.index(label) + 1) % len(labels)]


def test_beat_s_guardrail_pauses_only_the_region_that_drifts(
        celery_process, start_worker, champion, admin_user, client_user,  # noqa: F811
        reviewer, trained_model, tmp_path):
    deployment = champion.deployment
    labels = list(deployment.labels)
    policy = policy_change(
        deployment=deployment, actor=admin_user, stage="limited",
        rules=[{"name": RULE, "regions": ["north", "west"]}], confidence_threshold=0.5,
        audit_rate=0.2, reason="the model decides digits in north and west",
        override_reason="no shadow evidence in this test")
    assert policy.override_reason  # the evidence gate refused: no shadow reviews

    mail = tmp_path / "mail"
    worker = start_worker(settings_module="tests.settings_guardrails",
                          GUARDRAIL_TEST_MAIL_DIR=str(mail))
    beat = celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"),
                          ready="beat: Starting", settings_module="tests.settings_guardrails")
    logs = (worker.log, beat.log)

    files = trained_model.test_files
    counter = iter(range(1_000_000))

    def submit(region: str, path: Path) -> Case:
        # The real intake: the row is committed, then its prediction job goes to Redis.
        return case_intake(deployment=deployment, region_code=region,
                           image=SimpleUploadedFile(path.name, path.read_bytes(), "image/png"),
                           captured_at=CAPTURED_AT, external_id=f"drift-{next(counter)}",
                           submitted_by=client_user)

    truth: dict[int, str] = {}
    for i in range(PER_REGION):
        for region, path in (("north", files[2 * i]), ("west", files[2 * i + 1])):
            truth[submit(region, path).pk] = path.parent.name
    # The worker process predicts and routes every case.
    _wait(lambda: not Case.objects.filter(status="received").exists(), 60,
          "cases still wait for a prediction", *logs)
    decided = {region: Decision.objects.filter(case__region__code=region, source="model")
               .count() for region in ("north", "west")}
    assert min(decided.values()) >= PER_REGION // 2, decided

    # A reviewer answers every task the queue hands them (audits, low-confidence cases).
    answered = {"north": 0, "west": 0}
    while (task := review_claim_next(reviewer=reviewer)) is not None:
        case = task.case
        region = case.region.code
        if region == "west":
            model = (case.decision.label if task.reason == "audit"
                     else case.predictions.get(model_version=champion).label)
            answer = _drifted(model, labels)
        else:
            answer = truth[case.pk]
        review_submit(task_id=task.pk, lease_token=task.lease_token, reviewer=reviewer,
                      answer=answer)
        if task.reason == "audit":
            answered[region] += 1
    assert answered["west"] >= 8, answered  # the fewest disagreements that can pause

    # Beat's next guardrail run pauses west, and west only.
    pause = _wait(lambda: PolicyVersion.objects.filter(
        deployment=deployment, kind=ChangeKind.GUARDRAIL).first(), 90,
        "no guardrail pause", *logs)
    assert (pause.author, pause.paused_cells) == (None, [[RULE, "west"]])
    assert f"region west under rule {RULE}: agreement 0/" in pause.reason, pause.reason
    assert "region north" not in pause.reason
    assert "Task rollout.tasks.guardrails_run" in worker.log.read_text()  # sent by beat
    # The worker emailed the admins.
    sent = _wait(lambda: sorted(mail.glob("*.log")) if mail.exists() else [], 30,
                 "no alert email", *logs)
    email = "".join(path.read_text() for path in sent)
    assert "Subject: [rollout] digits: guardrail paused automation" in email
    assert "To: rollout-admins@example.com" in email
    assert f"region west under rule {RULE}" in email

    # From now on a west case goes to reviewers; the model still decides north's.
    # (north's image is one the model decided before: confident enough to be decided again)
    north_decided = Decision.objects.filter(case__region__code="north", source="model").first()
    assert north_decided is not None
    north = submit("north", Path(north_decided.case.image.path))
    west = submit("west", files[2 * PER_REGION + 1])
    _wait(lambda: not Case.objects.filter(pk__in=[north.pk, west.pk], status="received")
          .exists(), 30, "the new cases wait for a prediction", *logs)
    assert [t.reason for t in ReviewTask.objects.filter(case=west)] == ["paused"]
    assert Decision.objects.get(case=north).source == "model"
    assert not ReviewTask.objects.filter(case=north).exclude(reason="audit").exists()
    assert PolicyVersion.objects.filter(kind=ChangeKind.GUARDRAIL).count() == 1
