"""The whole slice on real parts: the HTTP API, Redis, a Celery worker process, PostgreSQL,
the reviewer's pages in Chromium, and the report."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from inference.models import InferenceClaim, Prediction
from inference.services import model_version_register
from reviewplatform.celery import app as celery_app
from reviewplatform.models import Case, Decision

from .conftest import CAPTURED_AT, other_connections_wait_closed

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def _database_url() -> str:
    db = connection.settings_dict
    return (f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}")


@pytest.fixture
def celery_process(transactional_db, tmp_path):
    """Starts real `celery` processes (workers, beat) on the test database and the test Redis,
    importing this checkout's code; stops those still running at the end."""
    celery_app.control.purge()
    processes: list[subprocess.Popen] = []

    def start(*arguments: str, ready: str, settings_module: str = "reviewplatform.settings.test",
              **environment: str) -> subprocess.Popen:
        log = tmp_path / f"celery-{len(processes)}-{arguments[0]}.log"
        env = {**os.environ, "DATABASE_URL": _database_url(),
               "MEDIA_ROOT": str(settings.MEDIA_ROOT),
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               "DJANGO_SETTINGS_MODULE": settings_module, **environment}
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "celery"), "-A", "reviewplatform", *arguments,
             "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            start_new_session=True)
        process.log = log  # type: ignore[attr-defined]
        processes.append(process)
        deadline = time.monotonic() + 60
        while ready not in log.read_text():
            assert process.poll() is None, f"celery {arguments[0]} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, (f"celery {arguments[0]} did not start:\n"
                                                 f"{log.read_text()}")
            time.sleep(0.2)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
    other_connections_wait_closed()


@pytest.fixture
def start_worker(celery_process):
    """Starts a `celery worker` (one pool process, both queues); keyword arguments go to its
    environment."""
    def start(settings_module: str = "reviewplatform.settings.test",
              **environment: str) -> subprocess.Popen:
        return celery_process(
            "worker", "--queues", "default,inference", "--concurrency", "1",
            "--without-mingle", "--without-gossip",
            "--hostname", f"e2e-{uuid.uuid4().hex[:8]}@%h", ready="ready.",
            settings_module=settings_module, **environment)
    return start


@pytest.fixture
def start_beat(celery_process, tmp_path):
    """Starts `celery beat` with its sweep of stale cases every second (tests/settings_beat.py)."""
    def start() -> subprocess.Popen:
        return celery_process("beat", "--schedule", str(tmp_path / "beat-schedule"),
                              ready="beat: Starting", settings_module="tests.settings_beat")
    return start


@pytest.fixture
def worker(start_worker):
    return start_worker()


def _wait_for_status(url: str, headers: dict[str, str], status: str, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        body = requests.get(url, headers=headers, timeout=10).json()
        if body["status"] == status or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def test_it_takes_a_case_from_the_api_to_a_human_decision(
    live_server, worker, browser, champion, reviewer, admin_user, api_key, digit_files, settings
):
    # The answer waits out a short undo window; the worker stores it when the window closes.
    settings.REVIEW_UNDO_SECONDS = 2
    headers = {"Authorization": f"Api-Key {api_key}"}
    image = digit_files["7"][0]

    # An API client submits a case.
    with image.open("rb") as file:
        response = requests.post(
            f"{live_server.url}/api/v1/cases/", headers=headers, timeout=30,
            data={"deployment": "digits", "region": "north", "external_id": "e2e-1",
                  "captured_at": CAPTURED_AT.isoformat()},
            files={"image": ("seven.png", file, "image/png")})
    assert response.status_code == 201, response.text
    case_url = f"{live_server.url}/api/v1/cases/{response.json()['id']}/"

    # The worker process predicts it; in the shadow stage it goes to the review queue.
    body = _wait_for_status(case_url, headers, "in_review", seconds=90)
    assert body["status"] == "in_review", body
    case = Case.objects.get(pk=body["id"])
    prediction = Prediction.objects.get(case=case, model_version=champion)
    assert prediction.status == "ok"
    assert set(prediction.probabilities) == set(champion.labels)
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-4
    assert prediction.confidence == max(prediction.probabilities.values())

    # A reviewer logs in, claims the case, sees region and local time but not the model's
    # answer, and answers with a number key.
    page = browser.new_page()
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", "reviewer")
    page.fill("#id_password", "reviewer-password")
    page.click("button[type=submit]")
    page.click("#start")
    page.wait_for_url("**/review/tasks/**")
    assert "North (north)" in page.inner_text("#case-region")
    assert page.inner_text("#case-local-time") == "2026-05-01 21:30"
    assert "shadow" in page.inner_text("#task-reason")
    text = page.content()
    assert f"{prediction.confidence:.2f}" not in text and "confidence" not in text.lower()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "e2e-review.png"), full_page=True)
    page.keyboard.press("7")  # a one-character label is its own key
    page.wait_for_url(f"{live_server.url}/")
    assert "queue is empty" in page.content()
    assert page.inner_text("#pending-answer") == "7"  # Backspace would still take it back

    _wait_for_status(case_url, headers, "decided", seconds=30)
    decision = Decision.objects.get(case=case)
    assert (decision.label, decision.source, decision.review.reviewer) == ("7", "human", reviewer)
    body = requests.get(case_url, headers=headers, timeout=10).json()
    assert body["status"] == "decided"
    assert body["decision"]["label"] == "7" and body["decision"]["source"] == "human"

    # The admin's report counts the case and compares model and human.
    admin_page = browser.new_page()
    admin_page.goto(f"{live_server.url}/login/")
    admin_page.fill("#id_username", "admin")
    admin_page.fill("#id_password", "admin-password")
    admin_page.click("button[type=submit]")
    admin_page.goto(f"{live_server.url}/deployments/digits/report/")
    assert admin_page.inner_text("#n-cases") == "1"
    assert admin_page.inner_text("#agreement-n") == "n = 1"
    expected = "1.000" if prediction.label == "7" else "0.000"
    assert admin_page.inner_text("#agreement") == expected
    admin_page.goto(f"{live_server.url}/deployments/digits/rollout/")
    assert "shadow" in admin_page.inner_text("#stage")


def test_it_requeues_a_case_whose_prediction_job_was_lost(
    live_server, start_worker, champion, api_key, digit_files, settings
):
    """The broker loses the job (a restart without persistence): beat's sweep finds the case
    by its row and a worker predicts it."""
    from reviewplatform.tasks import cases_requeue_stale

    headers = {"Authorization": f"Api-Key {api_key}"}
    with digit_files["3"][0].open("rb") as file:
        response = requests.post(
            f"{live_server.url}/api/v1/cases/", headers=headers, timeout=30,
            data={"deployment": "digits", "region": "east", "external_id": "lost-1",
                  "captured_at": CAPTURED_AT.isoformat()},
            files={"image": ("three.png", file, "image/png")})
    assert response.status_code == 201, response.text
    assert celery_app.control.purge() == 1  # the queued job is gone
    case_url = f"{live_server.url}/api/v1/cases/{response.json()['id']}/"

    start_worker()
    time.sleep(2)
    assert requests.get(case_url, headers=headers, timeout=10).json()["status"] == "received"

    settings.PREDICTION_STALE_SECONDS = 0
    assert cases_requeue_stale() == 1
    body = _wait_for_status(case_url, headers, "in_review", seconds=90)
    assert body["status"] == "in_review", body
    assert Prediction.objects.filter(case_id=body["id"], status="ok").count() == 1


@pytest.fixture
def challenger(champion, trained_model, admin_user):
    return model_version_register(deployment=champion.deployment, path=trained_model.path,
                                  name="challenger", actor=admin_user)


def test_a_killed_worker_loses_nothing(start_worker, start_beat, champion, challenger,
                                       client_user, digit_files):
    """The worker and its pool are killed (SIGKILL) in the middle of a batch: claims held, some
    cases predicted and routed, one batch half predicted, the rest waiting. The broker's queue
    is lost too (a restart without persistence), so that beat's sweep alone brings the
    unfinished cases back: a new worker takes over the dead one's claims once they are stale
    and finishes every case, predicted once per model version and routed once."""
    from reviewplatform.intake import case_intake

    files = [path for _, paths in sorted(digit_files.items()) for path in paths[:12]][:96]
    assert len(files) == 96
    for i, path in enumerate(files):
        case_intake(deployment=champion.deployment, region_code="north",
                    image=SimpleUploadedFile(path.name, path.read_bytes(), "image/png"),
                    captured_at=CAPTURED_AT, external_id=f"kill-{i}", submitted_by=client_user)
    batch = 8  # 12 batches of 8 cases; each one predicted by the champion, then the challenger
    first = start_worker(INFERENCE_BATCH_SIZE=str(batch), PREDICTION_STALE_SECONDS="3")

    # Kill once a later batch has its champion's predictions stored and the challenger is
    # predicting it: the claims of that batch are held until it is routed.
    deadline = time.monotonic() + 120
    while not ((predicted := Prediction.objects.count()) > 2 * batch
               and predicted % (2 * batch) == batch):
        assert predicted < 2 * len(files) - batch, "the worker finished before the kill"
        assert time.monotonic() < deadline, f"no prediction came:\n{first.log.read_text()}"
        time.sleep(0.005)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=30)

    predicted_cases = Case.objects.filter(predictions__isnull=False).distinct().count()
    assert InferenceClaim.objects.exists(), "the kill came between two batches"
    assert 0 < predicted_cases < len(files)
    assert Case.objects.filter(status="received").count() > len(files) - predicted_cases
    lost = Case.objects.filter(status="received").count()
    celery_app.control.purge()

    # A claim of the dead worker counts as abandoned after 3 s here (two minutes by default).
    worker = start_worker(INFERENCE_BATCH_SIZE=str(batch), PREDICTION_STALE_SECONDS="3")
    start_beat()
    deadline = time.monotonic() + 120
    while (Case.objects.filter(status="received").exists()
           or InferenceClaim.objects.exists()):  # released just after routing
        assert time.monotonic() < deadline, f"cases were left:\n{worker.log.read_text()}"
        time.sleep(0.5)

    requeued = [int(n) for n in re.findall(r"re-queued (\d+) cases whose prediction job was lost",
                                           worker.log.read_text())]
    assert requeued and requeued[0] == lost  # beat's sweep found every unfinished case
    assert Case.objects.count() == len(files)
    versions = {champion.pk, challenger.pk}
    assert Prediction.objects.count() == 2 * len(files)
    for case in Case.objects.prefetch_related("predictions", "review_tasks"):
        assert sorted(p.model_version_id for p in case.predictions.all()) == sorted(versions)
        assert all(p.status == "ok" for p in case.predictions.all())
        # Shadow stage: one open review task each, no decision yet.
        assert [(t.reason, t.status) for t in case.review_tasks.all()] == [("shadow", "open")]
        assert case.status == "in_review"
    assert not Decision.objects.exists()

    # The report counts each case once too: the workers' writes marked them, a fold counts.
    from rollout.reports.precounted import report_precounted
    from rollout.reports.rollup import rollup_fold
    from tests.report_oracle import report_build_live
    from tests.test_reports_selectors import filters

    f = filters(champion.deployment)
    assert rollup_fold() >= len(files)
    counted = report_precounted(f).inputs
    assert sum(day.predicted for day in counted) == len(files)
    assert counted == report_build_live(f).inputs


def _pool_processes(worker: subprocess.Popen) -> list[int]:
    return sorted(int(pid) for pid in
                  Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split())


def _wait_until_routed(case: Case, worker: subprocess.Popen, seconds: float) -> Case:
    deadline = time.monotonic() + seconds
    while (case := Case.objects.get(pk=case.pk)).status == "received":
        assert time.monotonic() < deadline, f"case {case.pk} waits:\n{worker.log.read_text()}"
        time.sleep(0.2)
    return case


def test_a_model_that_hangs_times_out_in_the_worker_which_carries_on(
        start_worker, champion, trained_model, admin_user, client_user, digit_files, tmp_path):
    """Celery's soft time limit interrupts a forward pass that hangs (a real prefork worker and
    its signal): the case gets a failed prediction and goes to reviewers, and the same worker
    process goes on to predict a case of another deployment."""
    from inference.demo_model import DIGIT_LABELS
    from inference.predictor import learner_load
    from reviewplatform.intake import case_intake
    from rollout.services import deployment_create, policy_publish

    from .slow_learners import Sleeping

    hanging = learner_load(str(trained_model.path))
    hanging.model = Sleeping(seconds=8, classes=len(DIGIT_LABELS))
    hanging.export(tmp_path / "hanging.pkl")
    slow = deployment_create(slug="slow", name="Slow digits", labels=DIGIT_LABELS,
                             regions=[("north", "North", "Europe/Oslo")], actor=admin_user)
    slow_version = model_version_register(deployment=slow, path=tmp_path / "hanging.pkl",
                                          name="hanging", champion=True, actor=admin_user)
    policy_publish(deployment=slow, stage="full", rules=[], actor=admin_user,
                   confidence_threshold=0.0, audit_rate=0.0,
                   reason="test: the model decides everything it may")
    # The worker's own limit: this process, which queues the jobs, keeps the default.
    assert settings.INFERENCE_TIME_LIMIT == 120
    worker = start_worker(settings_module="tests.settings_worker", INFERENCE_TIME_LIMIT="2",
                          INFERENCE_BATCH_WAIT_MS="0")
    pool = _pool_processes(worker)
    assert len(pool) == 1

    def submit(deployment, path: Path, external_id: str) -> Case:
        return case_intake(deployment=deployment, region_code="north",
                           image=SimpleUploadedFile(path.name, path.read_bytes(), "image/png"),
                           captured_at=CAPTURED_AT, external_id=external_id,
                           submitted_by=client_user)

    started = time.monotonic()
    hung = _wait_until_routed(submit(slow, digit_files["4"][0], "hangs"), worker, seconds=60)
    took = time.monotonic() - started

    failed = Prediction.objects.get(case=hung, model_version=slow_version)
    assert (failed.status, failed.error) == ("failed", "timed out after 2s")
    assert failed.label == "" and failed.confidence is None
    assert hung.status == "in_review" and not Decision.objects.filter(case=hung).exists()
    assert [task.reason for task in hung.review_tasks.all()] == ["model_failed"]
    assert f"model version {slow_version.pk} timed out on 1 cases" in worker.log.read_text()
    assert took < 8, worker.log.read_text()  # cut short, not slept out

    healthy = _wait_until_routed(submit(champion.deployment, digit_files["7"][0], "healthy"),
                                 worker, seconds=60)
    prediction = Prediction.objects.get(case=healthy, model_version=champion)
    assert prediction.status == "ok" and prediction.error == ""
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-4
    assert [task.reason for task in healthy.review_tasks.all()] == ["shadow"]
    # The same worker and pool process did both: the time limit killed nothing.
    assert worker.poll() is None and _pool_processes(worker) == pool
    log = worker.log.read_text()
    assert "Hard time limit" not in log and "WorkerLostError" not in log
