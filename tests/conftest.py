"""Shared fixtures: a few named users, the demo deployment, a real trained fastai learner."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image
from rest_framework.test import APIClient

from inference.demo_model import DIGIT_LABELS, demo_model_train
from inference.models import ModelVersion
from inference.services import model_version_register
from review.services import pending_answers_store
from reviewplatform.models import Deployment
from reviewplatform.services import api_key_create
from rollout.services import deployment_create

from .suite_rules import pytest_configure  # noqa: F401 - a skipped test fails the session
from .texture_learner import texture_model_train

REGIONS = [
    ("north", "North", "Europe/Oslo"),
    ("east", "East", "Asia/Tokyo"),
    ("west", "West", "America/Los_Angeles"),
]


@pytest.fixture(autouse=True)
def _cache_cleared():
    from django.core.cache import cache, caches

    from reviewplatform.tasks import PREDICT_SOON_KEY

    cache.clear()
    # The shared cache is the test Redis, which the broker uses too: only the prediction
    # job's marker goes, so that an earlier test's marker never holds back this one's job.
    caches["shared"].delete(PREDICT_SOON_KEY)


@pytest.fixture(scope="session", autouse=True)
def _sessions_closed_before_teardown(django_db_setup, django_db_blocker):
    """Before the test database is dropped, let other sessions on it (live-server threads,
    worker processes) finish closing; end those that linger (a live-server thread whose
    browser went away mid-response), since no test runs any more."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        other_connections_wait_closed(seconds=5)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")


@pytest.fixture(scope="session")
def trained_model(tmp_path_factory: pytest.TempPathFactory):
    """A real fastai learner trained on scikit-learn's digits (a few epochs: enough to be right
    most of the time), exported once per test session."""
    root = tmp_path_factory.mktemp("demo-model")
    return demo_model_train(data_dir=root / "digits", out=root / "digits.pkl", epochs=5)


@pytest.fixture(scope="session")
def texture_model(tmp_path_factory: pytest.TempPathFactory):
    """A second real fastai learner, unlike the digits: patches of the photos bundled with
    scikit-learn (pagoda, petals, leaves), trained once per test session and exported as a
    team's `export.pkl` (tests/texture_learner.py)."""
    root = tmp_path_factory.mktemp("texture-model")
    return texture_model_train(data_dir=root / "patches", out=root / "export.pkl")


@pytest.fixture
def digit_files(trained_model) -> dict[str, list[Path]]:
    """Held-out digit images by label."""
    by_label: dict[str, list[Path]] = {}
    for path in trained_model.test_files:
        by_label.setdefault(path.parent.name, []).append(path)
    return by_label


def _user(username: str, *groups: str, staff: bool = False) -> User:
    user = User.objects.create_user(username=username, password=f"{username}-password",
                                    is_staff=staff, is_superuser=staff)
    user.groups.set(Group.objects.filter(name__in=groups))
    return user


@pytest.fixture
def reviewer(db) -> User:
    return _user("reviewer", "reviewer")


@pytest.fixture
def other_reviewer(db) -> User:
    return _user("other-reviewer", "reviewer")


@pytest.fixture
def admin_user(db) -> User:
    return _user("admin", "rollout admin", "reviewer", staff=True)


@pytest.fixture
def client_user(db) -> User:
    return _user("client", "api client")


@pytest.fixture
def outsider(db) -> User:
    return _user("outsider")


@pytest.fixture
def deployment(db, admin_user) -> Deployment:
    return deployment_create(slug="digits", name="Handwritten digits", labels=DIGIT_LABELS,
                             regions=REGIONS, actor=admin_user)


@pytest.fixture
def champion(deployment, trained_model, admin_user) -> ModelVersion:
    return model_version_register(deployment=deployment, path=trained_model.path,
                                  name="champion", champion=True, actor=admin_user)


@pytest.fixture
def api_key(client_user, deployment) -> str:
    return api_key_create(user=client_user, name="tests", deployments=[deployment])[1]


@pytest.fixture
def api(api_key) -> APIClient:
    """An API client authenticated with the client user's API key."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key}")
    return client


def png_bytes(size: tuple[int, int] = (32, 32), color: str = "white") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def make_upload() -> Callable[..., SimpleUploadedFile]:
    def make(path: Path | None = None, *, content: bytes | None = None,
             name: str = "case.png") -> SimpleUploadedFile:
        data = path.read_bytes() if path is not None else (content or png_bytes())
        return SimpleUploadedFile(name, data, content_type="image/png")
    return make


CAPTURED_AT = datetime(2026, 5, 1, 21, 30, tzinfo=ZoneInfo("Europe/Oslo"))
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by Playwright (no browser download)."""
    import os

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs an event loop
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def redis_unreachable(settings) -> None:
    """Both caches on a loopback port nothing listens on: Redis down, as the platform sees it."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    down = {"BACKEND": "reviewplatform.cache.ReusedClientRedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0", "OPTIONS": {"socket_connect_timeout": 1}}
    settings.CACHES = {"default": down, "shared": down}


def browser_login(page, base_url: str, username: str) -> None:
    """Log `username` in on the login page (password: `<username>-password`)."""
    page.goto(f"{base_url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", f"{username}-password")
    page.press("#id_password", "Enter")
    page.wait_for_selector("header")


def other_connections_wait_closed(seconds: float = 15) -> None:
    """Wait until no other session uses the test database.

    A live-server thread serving a browser's keep-alive connection holds its database
    connection until the browser goes away; the test database can only be flushed and
    dropped once it is closed.
    """
    import time

    from django.db import connection

    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.1)


def pending_answers_stored() -> int:
    """Store the review page's answers as beat does once their undo window has closed."""
    return pending_answers_store(
        now=timezone.now() + timedelta(seconds=settings.REVIEW_UNDO_SECONDS + 1))
