"""Data lifecycle: case images deleted under a deployment's retention, everything else kept;
and a backup restored into a fresh database and media folder."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from PIL import Image

from inference.models import ModelVersion, Prediction
from reviewplatform.models import Case, Decision, GoldCase, ReviewTask
from reviewplatform.pipeline import case_route
from reviewplatform.services import case_images_expire, case_submit
from rollout.reports.filters import ReportFilters
from rollout.reports.selectors import report_build
from rollout.selectors import policy_current
from rollout.services import policy_publish

from .conftest import CAPTURED_AT

ROOT = Path(__file__).resolve().parent.parent
_ids = iter(range(1_000_000))


@pytest.fixture
def media(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def model(deployment) -> ModelVersion:
    return ModelVersion.objects.create(deployment=deployment, name="sim", sha256="0" * 64,
                                       artifact="models/sim.pkl", labels=deployment.labels,
                                       is_champion=True)


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (28, 28), shade).save(buffer, format="PNG")
    return buffer.getvalue()


def _case(deployment, model, client_user, *, route: bool = True) -> Case:
    n = next(_ids)
    case = case_submit(deployment=deployment, region_code="north", captured_at=CAPTURED_AT,
                       image=SimpleUploadedFile("c.png", _png(n % 250), "image/png"),
                       external_id=f"keep-{n}", submitted_by=client_user)
    Prediction.objects.create(case=case, model_version=model, status=Prediction.Status.OK,
                              label="7", confidence=0.99)
    if route:
        case_route(case_id=case.pk)
    case.refresh_from_db()
    return case


@pytest.mark.django_db
def test_images_past_retention_go_and_everything_else_stays(
        deployment, model, client_user, admin_user, media, client,
        django_capture_on_commit_callbacks):
    deployment.image_retention_days = 30
    deployment.save()
    policy_publish(deployment=deployment, stage="full", actor=admin_user, reason="all",
                   rules=[], confidence_threshold=0.0, audit_rate=0.0,
                   override_reason="tested elsewhere")
    with django_capture_on_commit_callbacks(execute=False):
        expires = _case(deployment, model, client_user)
        audited = _case(deployment, model, client_user)
        gold = _case(deployment, model, client_user)
        waiting = _case(deployment, model, client_user, route=False)
    ReviewTask.objects.create(case=audited, reason=ReviewTask.Reason.AUDIT,
                              policy_version=policy_current(deployment_id=deployment.pk),
                              audit_rate=0.05)
    GoldCase.objects.create(case=gold, label="7", marked_by=admin_user)
    before = report_build(ReportFilters(deployment=deployment))
    files = {case.pk: media / case.image.name for case in (expires, audited, gold, waiting)}
    assert all(path.is_file() for path in files.values())
    decided = Decision.objects.get(case=expires).decided_at

    assert case_images_expire(now=decided + timedelta(days=29)) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert case_images_expire(now=decided + timedelta(days=31)) == 1

    expires.refresh_from_db()
    assert expires.image.name == "" and expires.image_deleted_at == decided + timedelta(days=31)
    assert not files[expires.pk].exists()
    assert all(files[case.pk].is_file() for case in (audited, gold, waiting))
    # The record and the statistics stay: the decision, the hash, the report's figures.
    assert Decision.objects.filter(case=expires).exists()
    assert len(expires.image_sha256) == 64
    after = report_build(ReportFilters(deployment=deployment))
    assert (after.counts, after.audits, after.mix) == (before.counts, before.audits, before.mix)
    assert case_images_expire(now=decided + timedelta(days=60)) == 0  # nothing more to do

    client.force_login(admin_user)
    page = client.get(f"/cases/{expires.pk}/").content.decode()
    assert "Image deleted under retention" in page and expires.image_sha256 in page
    gone = client.get(f"/cases/{expires.pk}/image/")
    assert gone.status_code == 410
    assert b"deleted under its deployment's retention" in gone.content


@pytest.mark.django_db
def test_without_a_retention_setting_images_are_kept(deployment, model, client_user,
                                                      admin_user, media,
                                                      django_capture_on_commit_callbacks):
    policy_publish(deployment=deployment, stage="full", actor=admin_user, reason="all",
                   rules=[], confidence_threshold=0.0, audit_rate=0.0,
                   override_reason="tested elsewhere")
    with django_capture_on_commit_callbacks(execute=False):
        case = _case(deployment, model, client_user)

    assert case_images_expire(now=timezone.now() + timedelta(days=3650)) == 0
    assert (media / case.image.name).is_file()


def _url(name: str) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"


@pytest.mark.django_db(transaction=True)
def test_a_backup_restores_into_a_fresh_database_with_every_case_decision_and_image(
        deployment, model, client_user, admin_user, media, tmp_path,
        django_capture_on_commit_callbacks):
    policy_publish(deployment=deployment, stage="full", actor=admin_user, reason="all",
                   rules=[], confidence_threshold=0.0, audit_rate=0.0,
                   override_reason="tested elsewhere")
    with django_capture_on_commit_callbacks(execute=False):
        cases = [_case(deployment, model, client_user) for _ in range(5)]
        cases.append(_case(deployment, model, client_user, route=False))
    expected = {c.pk: (c.image.name, c.image_sha256, c.status) for c in cases}
    env = {**os.environ, "DATABASE_URL": _url(connection.settings_dict["NAME"]),
           "MEDIA_ROOT": str(media)}
    subprocess.run([sys.executable, "scripts/backup.py", "backup", str(tmp_path / "backup")],
                   cwd=ROOT, env=env, check=True)

    restored_name = "restore_check"
    with psycopg.connect(_url("postgres"), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {restored_name}")
        admin.execute(f"CREATE DATABASE {restored_name}")
    try:
        restored_media = tmp_path / "restored-media"
        env = {**os.environ, "DATABASE_URL": _url(restored_name),
               "MEDIA_ROOT": str(restored_media)}
        subprocess.run([sys.executable, "scripts/backup.py", "restore",
                        str(tmp_path / "backup")], cwd=ROOT, env=env, check=True)

        with psycopg.connect(_url(restored_name)) as db:
            rows = db.execute("SELECT id, image, image_sha256, status FROM reviewplatform_case"
                              ).fetchall()
            decisions = db.execute("SELECT case_id, label, source FROM "
                                   "reviewplatform_decision").fetchall()
        assert {pk: (image, sha, status) for pk, image, sha, status in rows} == expected
        assert sorted(decisions) == sorted((c.pk, "7", "model") for c in cases[:5])
        for image, sha, _ in expected.values():
            data = (restored_media / image).read_bytes()
            assert hashlib.sha256(data).hexdigest() == sha
    finally:
        with psycopg.connect(_url("postgres"), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {restored_name}")


def test_a_restore_refuses_a_folder_that_is_not_a_backup(tmp_path):
    done = subprocess.run([sys.executable, "scripts/backup.py", "restore", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "not a backup made by this script" in done.stderr
