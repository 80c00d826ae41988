"""API keys: scoped to deployments, shown once, stored hashed, revocable, with a last-used time."""

from __future__ import annotations

import hashlib
import importlib
import time
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from reviewplatform.errors import ServiceError
from reviewplatform.models import ApiKey, Case
from reviewplatform.services import api_key_create, api_key_mark_used, api_key_revoke
from reviewplatform.services.api_keys import API_KEY_CACHE_SECONDS, API_KEYS_GENERATION
from rollout.services import deployment_create

URL = "/api/v1/cases/"
scoping = importlib.import_module("reviewplatform.migrations.0005_api_key_deployments_last_used")


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def bears(admin_user):
    return deployment_create(slug="bears", name="Bear warning", labels=["grizzly", "black"],
                             regions=[("north", "North", "Europe/Oslo")], actor=admin_user)


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def client_with(secret: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {secret}")
    return client


def submit(client: APIClient, make_upload, capture, *, deployment: str = "digits",
           external_id: str = "camera-7/0001"):
    with capture(execute=False) as callbacks:
        response = client.post(URL, {
            "deployment": deployment, "region": "north", "external_id": external_id,
            "captured_at": "2026-05-01T21:30:00+02:00", "image": make_upload(),
        }, format="multipart")
    return response, callbacks


def test_it_refuses_a_submit_to_a_deployment_outside_the_keys_scope(
        api, deployment, bears, make_upload, django_capture_on_commit_callbacks):
    response, callbacks = submit(api, make_upload, django_capture_on_commit_callbacks,
                                 deployment="bears")

    assert response.status_code == 403, response.content
    message = "this API key may not submit to deployment 'bears'; it may submit to: digits"
    assert response.json() == {"code": "permission_denied", "message": message,
                               "fields": {"deployment": [message]}}
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert callbacks == []

    allowed, _ = submit(api, make_upload, django_capture_on_commit_callbacks)
    assert allowed.status_code == 201, allowed.content
    assert list(Case.objects.values_list("deployment__slug", flat=True)) == ["digits"]


def test_it_answers_an_unknown_deployment_as_one_outside_the_keys_scope(
        api, deployment, bears, make_upload, django_capture_on_commit_callbacks):
    # The answer must not tell a client which deployments exist.
    unknown, unknown_jobs = submit(api, make_upload, django_capture_on_commit_callbacks,
                                   deployment="nowhere")
    foreign, _ = submit(api, make_upload, django_capture_on_commit_callbacks,
                        deployment="bears")

    assert unknown.status_code == foreign.status_code == 403, unknown.content
    assert unknown.json()["code"] == foreign.json()["code"] == "permission_denied"
    assert unknown.json()["message"] == ("this API key may not submit to deployment "
                                         "'nowhere'; it may submit to: digits")
    assert (unknown.json()["message"].replace("nowhere", "?")
            == foreign.json()["message"].replace("bears", "?"))
    assert list(unknown.json()["fields"]) == list(foreign.json()["fields"]) == ["deployment"]
    assert Case.objects.count() == 0
    assert stored_files() == []
    assert unknown_jobs == []


def test_a_key_scoped_to_two_deployments_submits_to_both(
        client_user, deployment, bears, make_upload, django_capture_on_commit_callbacks):
    _, secret = api_key_create(user=client_user, name="both", deployments=[deployment, bears])
    client = client_with(secret)

    for slug in ("digits", "bears"):
        response, _ = submit(client, make_upload, django_capture_on_commit_callbacks,
                             deployment=slug)
        assert response.status_code == 201, response.content

    assert sorted(Case.objects.values_list("deployment__slug", flat=True)) == ["bears",
                                                                                "digits"]


def test_a_key_needs_at_least_one_deployment(client_user, deployment):
    with pytest.raises(ServiceError) as refused:
        api_key_create(user=client_user, name="nowhere", deployments=[])

    assert refused.value.field == "deployments"
    assert ApiKey.objects.count() == 0


def test_it_stores_only_the_hash_of_the_secret(client_user, deployment):
    _, secret = api_key_create(user=client_user, name="ci", deployments=[deployment])

    stored = ApiKey.objects.get()
    assert stored.hashed_key == hashlib.sha256(secret.encode()).hexdigest()
    assert secret.partition(".")[0] == stored.prefix
    assert secret.partition(".")[2] not in {stored.name, stored.prefix, stored.hashed_key}
    assert len(secret.partition(".")[2]) >= 40
    assert list(stored.deployments.values_list("slug", flat=True)) == ["digits"]


def test_it_refuses_a_revoked_key_with_401(
        client_user, deployment, make_upload, django_capture_on_commit_callbacks):
    api_key, secret = api_key_create(user=client_user, name="ci", deployments=[deployment])
    client = client_with(secret)
    assert client.get(f"{URL}999999/").status_code == 404  # accepted, the case is not there

    api_key_revoke(prefix=api_key.prefix)
    response, callbacks = submit(client, make_upload, django_capture_on_commit_callbacks)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response.json()["code"] == "authentication_failed"
    assert response.json()["message"] == "invalid or revoked API key"
    assert Case.objects.count() == 0
    assert callbacks == []
    assert client.get(f"{URL}999999/").status_code == 401


def test_a_submit_reads_nothing_before_its_insert_once_the_key_is_cached(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    # The key, its user's permissions, its deployments and their regions: read once, cached.
    first, _ = submit(api, make_upload, django_capture_on_commit_callbacks, external_id="a")
    with CaptureQueriesContext(connection) as queries:
        second, _ = submit(api, make_upload, django_capture_on_commit_callbacks,
                           external_id="b")

    assert (first.status_code, second.status_code) == (201, 201)
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    assert statements == ["SAVEPOINT", "INSERT", "RELEASE"]  # the test's transaction around


def test_changes_to_a_cached_key_take_effect_on_the_next_request(
        client_user, deployment, bears, make_upload, django_capture_on_commit_callbacks):
    api_key, secret = api_key_create(user=client_user, name="ci",
                                     deployments=[deployment, bears])
    client = client_with(secret)

    def status(external_id: str, slug: str = "digits") -> int:
        response, _ = submit(client, make_upload, django_capture_on_commit_callbacks,
                             deployment=slug, external_id=external_id)
        return response.status_code

    assert status("1") == 201 and status("2", "bears") == 201
    api_key.deployments.remove(bears)  # as the admin's form does
    assert status("3", "bears") == 403 and status("4") == 201
    client_user.groups.clear()
    assert status("5") == 403
    client_user.groups.add(Group.objects.get(name="api client"))
    assert status("6") == 201
    client_user.is_active = False
    client_user.save()
    assert status("7") == 401
    client_user.is_active = True
    client_user.save()
    api_key.revoked_at = datetime.now(UTC)
    api_key.save()  # as the admin's form does
    assert status("8") == 401


def test_a_change_that_no_signal_tells_is_read_within_the_cache_time(
        client_user, deployment, monkeypatch):
    api_key, secret = api_key_create(user=client_user, name="ci", deployments=[deployment])
    client = client_with(secret)
    assert client.get(f"{URL}999999/").status_code == 404

    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=datetime.now(UTC))  # no signal
    assert client.get(f"{URL}999999/").status_code == 404  # still the cached key
    later = time.time() + API_KEY_CACHE_SECONDS + 0.1
    monkeypatch.setattr(time, "time", lambda: later)
    assert client.get(f"{URL}999999/").status_code == 401


def test_a_key_revoked_while_redis_cannot_be_reached_is_refused_at_once(
        client_user, deployment, redis_unreachable, caplog):
    # Made, used and revoked with Redis down: keys are read from the database meanwhile, and
    # what was cached before expires within API_KEY_CACHE_SECONDS, which the log says.
    api_key, secret = api_key_create(user=client_user, name="ci", deployments=[deployment])
    assert client_with(secret).get(f"{URL}999999/").status_code == 404
    out = StringIO()

    call_command("api_key_revoke", api_key.prefix, stdout=out)

    assert f"API key {api_key.prefix} (ci) of client is revoked" in out.getvalue()
    assert client_with(secret).get(f"{URL}999999/").status_code == 401
    assert (f"API keys cached before this change are used until they expire, within "
            f"{API_KEY_CACHE_SECONDS} s") in caplog.text


def test_a_reviewer_logs_in_while_redis_cannot_be_reached(client, reviewer, redis_unreachable):
    response = client.post("/login/", {"username": "reviewer", "password": "reviewer-password"})

    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(reviewer.pk)


def test_a_login_leaves_the_cached_keys_alone_and_a_change_to_the_user_does_not(
        client, reviewer):
    from django.core.cache import cache

    cache.set(API_KEYS_GENERATION, 5, timeout=None)
    client.post("/login/", {"username": "reviewer", "password": "reviewer-password"})
    assert client.session["_auth_user_id"] == str(reviewer.pk)
    assert cache.get(API_KEYS_GENERATION) == 5  # the save of last_login alone

    reviewer.is_active = False
    reviewer.save(update_fields=["is_active"])
    assert cache.get(API_KEYS_GENERATION) == 6


def test_revoking_twice_keeps_the_first_revocation_time(client_user, deployment):
    api_key, _ = api_key_create(user=client_user, name="ci", deployments=[deployment])
    first = datetime(2026, 5, 1, 12, tzinfo=UTC)

    api_key_revoke(prefix=api_key.prefix, now=first)
    again = api_key_revoke(prefix=api_key.prefix, now=first + timedelta(hours=1))

    assert again.revoked_at == first
    with pytest.raises(ServiceError):
        api_key_revoke(prefix="nosuchkey")


def test_another_client_on_the_same_deployment_cannot_read_a_case(
        api, deployment, make_upload, django_capture_on_commit_callbacks):
    created, _ = submit(api, make_upload, django_capture_on_commit_callbacks)
    assert created.status_code == 201
    other = User.objects.create_user(username="other-client")
    other.groups.add(Group.objects.get(name="api client"))
    _, other_secret = api_key_create(user=other, name="other", deployments=[deployment])

    response = client_with(other_secret).get(created["Location"])

    assert response.status_code == 404
    assert api.get(created["Location"]).status_code == 200


def test_it_notes_the_last_use_at_most_once_a_minute(client_user, deployment):
    api_key, _ = api_key_create(user=client_user, name="ci", deployments=[deployment])
    assert api_key.last_used_at is None
    t0 = datetime(2026, 5, 1, 12, tzinfo=UTC)

    api_key_mark_used(api_key=api_key, now=t0)
    api_key_mark_used(api_key=ApiKey.objects.get(), now=t0 + timedelta(seconds=59))
    assert ApiKey.objects.get().last_used_at == t0

    api_key_mark_used(api_key=ApiKey.objects.get(), now=t0 + timedelta(seconds=61))
    assert ApiKey.objects.get().last_used_at == t0 + timedelta(seconds=61)


def test_a_request_notes_the_last_use_and_the_next_one_writes_nothing(client_user, deployment):
    _, secret = api_key_create(user=client_user, name="ci", deployments=[deployment])
    client = client_with(secret)
    before = datetime.now(UTC)

    with CaptureQueriesContext(connection) as first:
        client.get(f"{URL}999999/")
    used = ApiKey.objects.get().last_used_at
    with CaptureQueriesContext(connection) as second:
        client.get(f"{URL}999999/")

    assert used is not None and before <= used <= datetime.now(UTC)
    assert ApiKey.objects.get().last_used_at == used

    def writes(queries: CaptureQueriesContext) -> list[str]:
        return [q["sql"] for q in queries.captured_queries
                if q["sql"].startswith('UPDATE "reviewplatform_apikey"')]
    assert len(writes(first)) == 1
    assert writes(second) == []


def test_the_command_creates_a_scoped_key_and_prints_it_once(client_user, deployment, bears,
                                                            make_upload,
                                                            django_capture_on_commit_callbacks):
    out, err = StringIO(), StringIO()

    call_command("api_key_create", "--user", "client", "--deployment", "digits",
                 "--deployment", "bears", "--name", "camera gateway", stdout=out, stderr=err)

    secret = out.getvalue().strip()
    api_key = ApiKey.objects.get()
    assert api_key.name == "camera gateway"
    assert api_key.user == client_user
    assert sorted(api_key.deployments.values_list("slug", flat=True)) == ["bears", "digits"]
    assert api_key.hashed_key == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in err.getvalue()
    assert api_key.prefix in err.getvalue()
    response, _ = submit(client_with(secret), make_upload, django_capture_on_commit_callbacks,
                         deployment="bears")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize(("arguments", "message"), [
    (["--user", "nobody", "--deployment", "digits"], "no user is named 'nobody'"),
    (["--user", "client", "--deployment", "digits", "--deployment", "moon"],
     "unknown deployment: moon"),
])
def test_the_command_refuses_unknown_names_creating_nothing(client_user, deployment, arguments,
                                                           message):
    with pytest.raises(CommandError, match=message):
        call_command("api_key_create", *arguments, "--name", "x", stdout=StringIO(),
                     stderr=StringIO())

    assert ApiKey.objects.count() == 0


def test_the_command_revokes_a_key_by_its_prefix(client_user, deployment):
    api_key, secret = api_key_create(user=client_user, name="ci", deployments=[deployment])
    assert client_with(secret).get(f"{URL}999999/").status_code == 404
    out = StringIO()

    call_command("api_key_revoke", api_key.prefix, stdout=out)

    assert ApiKey.objects.get().revoked_at is not None
    assert f"API key {api_key.prefix} (ci) of client is revoked" in out.getvalue()
    assert client_with(secret).get(f"{URL}999999/").status_code == 401
    with pytest.raises(CommandError, match="no API key has the prefix 'ffffffff'"):
        call_command("api_key_revoke", "ffffffff", stdout=StringIO())


def test_keys_made_before_scoping_keep_the_deployments_their_user_submitted_to(
        api, client_user, outsider, deployment, bears, make_upload,
        django_capture_on_commit_callbacks):
    assert submit(api, make_upload, django_capture_on_commit_callbacks)[0].status_code == 201
    client_key = ApiKey.objects.get(user=client_user)
    idle_key, _ = api_key_create(user=outsider, name="idle", deployments=[bears])
    for key in (client_key, idle_key):
        key.deployments.clear()  # as the migration finds them: no scope yet

    scoping.keys_scoped_to_their_deployments(apps, None)

    assert list(client_key.deployments.values_list("slug", flat=True)) == ["digits"]
    assert list(idle_key.deployments.all()) == []
