"""Who may reach what: every route of the URL configuration, for each role, and the status it
answers; a refused request changes nothing.

MATRIX holds one entry per route (by its name): the methods that matter, the body sent, and the
status expected for each role. The routes are read from the URL configuration itself, so a new
endpoint without an entry fails `test_every_route_has_an_entry`.

Roles, in the order of each row:

- anonymous: no login, no key;
- client_a, client_b: two API clients, each with its own key scoped to the deployment; API
  routes (under /api/) get the key, pages a session. The case, the webhook endpoint and the
  delivery in the paths are client_a's: client_b must get 404 on them, as if they did not exist;
- reviewer, senior: the review groups;
- rollout_admin, model_admin: staff (not superusers) in the group of that name;
- superuser.

Other roles sign in with a session on API routes too. `login` means a redirect to a login page
(the site's or the admin's). Each cell runs inside a savepoint rolled back after it, so that a
request that succeeds (a deletion, a publication) does not change what the next one sees.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.shortcuts import resolve_url
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from django.views.static import serve

from inference.models import ModelVersion, ReferenceImage, ReferenceSet
from reviewplatform.models import (
    ApiKey,
    Case,
    Decision,
    Deployment,
    Review,
    ReviewTask,
)
from reviewplatform.services import api_key_create
from rollout.models import PolicyVersion, ScheduledChange
from rollout.services import policy_schedule
from tests.conftest import CAPTURED_AT, png_bytes
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create, endpoint_ping

ROLES = ("anonymous", "client_a", "client_b", "reviewer", "senior", "rollout_admin",
         "model_admin", "superuser")
LOGIN = "login"

Expected = int | str
Body = dict[str, Any] | Callable[[], dict[str, Any]] | None


@dataclass(frozen=True)
class Call:
    method: str
    expected: dict[str, Expected]
    body: Body = None
    json: bool = False


def _row(spec: str) -> dict[str, Expected]:
    tokens = spec.split()
    assert len(tokens) == len(ROLES), f"{spec!r}: one status per role, {len(ROLES)} in all"
    return {role: token if token == LOGIN else int(token)
            for role, token in zip(ROLES, tokens, strict=True)}


def get(spec: str) -> Call:
    return Call("GET", _row(spec))


def post(spec: str, body: Body = None, *, json: bool = False) -> Call:
    return Call("POST", _row(spec), body or {}, json)


def patch(spec: str, body: Body) -> Call:
    return Call("PATCH", _row(spec), body, json=True)


def delete(spec: str) -> Call:
    return Call("DELETE", _row(spec))


def _case_form() -> dict[str, Any]:
    return {"deployment": "digits", "region": "north", "captured_at": CAPTURED_AT.isoformat(),
            "external_id": "matrix-case",
            "image": SimpleUploadedFile("case.png", png_bytes(), content_type="image/png")}


CASE_BATCH = {"cases": [{"deployment": "digits", "region": "north",
                         "captured_at": CAPTURED_AT.isoformat(), "external_id": "matrix-batch",
                         "image_base64": base64.b64encode(png_bytes()).decode()}]}
POLICY = {"stage": "shadow", "rules": [], "confidence_threshold": 0.9, "audit_rate": 0.05}


def _scheduled() -> dict[str, Any]:
    return {**POLICY, "reason": "matrix",
            "effective_at": (timezone.now() + timedelta(days=2)).isoformat()}


# One entry per route. Pages need a login (anonymous: the login page), then a permission
# (403 without it), except where a view answers 404 so as not to tell what exists. The API
# answers 401 without credentials. An empty form is enough to show that a caller got past
# the permission check: the view then refuses the form itself (400).
#
#                                 anon   A     B     rev   sen   roll  model super
MATRIX: dict[str, list[Call]] = {
    # Everyone, logged in or not.
    "healthz": [get("200 200 200 200 200 200 200 200")],
    # No Celery worker answers in the tests.
    "readyz": [get("503 503 503 503 503 503 503 503")],
    "login": [get("200 200 200 200 200 200 200 200")],
    # Logging out is a POST (Django 5); it lands on the login page.
    "logout": [get("405 405 405 405 405 405 405 405"),
               post("login login login login login login login login")],
    "api-schema": [get("200 200 200 200 200 200 200 200")],
    "api-docs": [get("200 200 200 200 200 200 200 200")],
    "api-redoc": [get("200 200 200 200 200 200 200 200")],

    # Everyone logged in.
    "review-home": [get("login 200 200 200 200 200 200 200")],
    "case-search": [get("login 200 200 200 200 200 200 200")],

    # Reviewing: the add_review permission (reviewers, seniors). Without a lease token a
    # reviewer's answer is a 400; claiming the next case leads to it (302).
    "review-next": [post("login 403 403 302 302 403 403 302")],
    # A task the reviewer does not hold: the next one is claimed instead (302).
    "review-task": [get("login 403 403 302 302 403 403 302")],
    "review-answer": [post("login 403 403 400 400 403 403 400")],
    "review-skip": [post("login 403 403 400 400 403 403 400")],
    "review-stop": [post("login 403 403 400 400 403 403 400")],
    "review-lease": [post("login 403 403 400 400 403 403 400")],
    # Nothing to undo: the reviewer is sent on to the next case.
    "review-undo": [post("login 403 403 302 302 403 403 302")],
    # Every reviewer's figures: seniors and admins.
    "review-team": [get("login 403 403 403 200 200 403 200")],

    # The case page: those who may see decisions (rollout admins, superusers); a reviewer only
    # the cases they reviewed (none here); a client the cases it submitted. Others: 404, as for
    # a case that does not exist.
    "case-page": [get("login 200 404 404 404 200 404 200")],
    # Images: those who may see cases (view_case).
    "case-image": [get("login 404 404 200 200 200 404 200")],

    # Onboarding and models: staff with the register permission (learners are pickles).
    "deployment-new": [get("login 403 403 403 403 403 200 200"),
                       post("login 403 403 403 403 403 400 400")],
    "models": [get("login 403 403 403 403 200 200 200")],
    "model-register": [post("login 403 403 403 403 403 400 400")],
    "model-promote": [post("login 403 403 403 403 403 400 400")],
    "model-set-active": [post("login 403 403 403 403 403 400 400")],
    # Reference images (the disagreements gallery shows a case's nearest): staff who may see
    # model versions.
    "reference-image": [get("login 403 403 403 403 200 200 200")],

    # The rollout page and its actions: rollout admins.
    "rollout": [get("login 403 403 403 403 200 403 200")],
    "alerts": [get("login 403 403 403 403 200 403 200")],
    "rollout-publish": [post("login 403 403 403 403 400 403 400")],
    "rollout-preview": [post("login 403 403 403 403 400 403 400")],  # no fields: a 400
    # Pausing needs nothing more than the permission: it pauses, back to the page.
    "rollout-pause": [post("login 403 403 403 403 400 403 400")],  # unconfirmed
    "rollout-resume": [post("login 403 403 403 403 400 403 400")],
    "rollout-cell-pause": [post("login 403 403 403 403 400 403 400")],  # no reason
    "rollout-rollback": [post("login 403 403 403 403 400 403 400")],

    # Reports: rollout admins; the disagreements gallery also seniors, who adjudicate.
    "report": [get("login 403 403 403 403 200 403 200")],
    "report-disagreements": [get("login 403 403 403 200 200 403 200")],
    # Adjudicating is the seniors' (an empty label is refused with a message: 302).
    "report-adjudicate": [post("login 403 403 403 302 403 403 302")],
    "report-export": [get("login 403 403 403 403 200 403 200")],
    "report-retraining": [get("login 403 403 403 403 200 403 200")],

    # Prometheus: the bearer token (none set here) or a staff login.
    "metrics": [get("403 403 403 403 403 200 200 200")],

    # The Django admin: staff; others are sent to its login page.
    "admin:index": [get("login login login login login 200 200 200")],

    # Cases over the API: anyone authenticated reads the cases they may see (their own, or all
    # with view_decision: never a reviewer, whom decisions would unblind); submitting needs
    # add_case (API clients).
    "api-cases": [get("401 200 200 200 200 200 200 200"),
                  post("401 201 201 403 403 403 403 201", _case_form)],
    "api-cases-batch": [post("401 200 200 403 403 403 403 200", CASE_BATCH, json=True)],
    "api-case-detail": [get("401 200 404 404 404 200 404 200")],

    # Onboarding over the API: model admins.
    "api-deployments": [post("401 403 403 403 403 403 400 400")],

    # Webhook endpoints: their owner only (add_webhookendpoint); someone else's is a 404.
    "api-webhooks": [get("401 200 200 403 403 403 403 200"),
                     post("401 201 201 403 403 403 403 201",
                          {"url": "http://127.0.0.1:9/hook"}, json=True)],
    "api-webhook-detail": [get("401 200 404 403 403 403 403 404"),
                           patch("401 200 404 403 403 403 403 404", {"description": "x"}),
                           delete("401 204 404 403 403 403 403 404")],
    "api-webhook-rotate-secret": [post("401 200 404 403 403 403 403 404")],
    "api-webhook-ping": [post("401 202 404 403 403 403 403 404")],
    "api-webhook-deliveries": [get("401 200 404 403 403 403 403 404")],
    "api-webhook-delivery": [get("401 200 404 403 403 403 403 404")],
    # The ping's delivery is still pending: 409 for its owner.
    "api-webhook-redeliver": [post("401 409 404 403 403 403 403 404")],

    # The rollout's staff API: rollout admins, as on the rollout page.
    "api-policy": [get("401 403 403 403 403 200 403 200"),
                   post("401 403 403 403 403 201 403 201", {**POLICY, "reason": "matrix"},
                        json=True)],
    "api-policy-pause": [post("401 403 403 403 403 201 403 201", {"reason": "matrix"},
                              json=True)],
    "api-policy-rollback": [post("401 403 403 403 403 400 403 400")],
    "api-policy-history": [get("401 403 403 403 403 200 403 200")],
    "api-policy-evidence": [post("401 403 403 403 403 200 403 200", POLICY, json=True)],
    "api-policy-guardrails": [get("401 403 403 403 403 200 403 200")],
    "api-policy-schedule": [get("401 403 403 403 403 200 403 200"),
                            post("401 403 403 403 403 201 403 201", _scheduled, json=True)],
    "api-policy-schedule-cancel": [post("401 403 403 403 403 200 403 200")],
}


@dataclass(frozen=True)
class Route:
    key: str
    pattern: str
    params: tuple[str, ...] = field(default=())


def _routes(patterns: list[Any], prefix: str = "",
            params: tuple[str, ...] = ()) -> Iterator[Route]:
    for entry in patterns:
        pattern = prefix + str(entry.pattern)
        names = params + tuple(getattr(entry.pattern, "converters", {}))
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                # The admin's own pages (its login, each model's lists and forms) are Django's,
                # guarded by the admin site for staff and by each model's permissions
                # (tests/test_admin_records.py); its index is the door and stands for them.
                yield Route("admin:index", pattern)
                continue
            yield from _routes(entry.url_patterns, pattern, names)
        elif isinstance(entry, URLPattern):
            if entry.callback is serve:
                # Static and media files served by Django in development only: files, not
                # endpoints (case images have their own guarded view, case-image).
                continue
            yield Route(entry.name or pattern, pattern, names)


def project_routes() -> list[Route]:
    return list(_routes(get_resolver().url_patterns))


def test_every_route_has_an_entry():
    keys = {route.key for route in project_routes()}
    missing = sorted(keys - MATRIX.keys())
    stale = sorted(MATRIX.keys() - keys)
    assert not missing, (f"routes without an entry: {', '.join(missing)}: add them to MATRIX "
                         "with the status each role must get")
    assert not stale, f"MATRIX entries for no route: {', '.join(stale)}: remove them"


def _user(username: str, *groups: str, staff: bool = False, superuser: bool = False) -> User:
    user = User.objects.create_user(username=username, is_staff=staff or superuser,
                                    is_superuser=superuser)
    user.groups.set(Group.objects.filter(name__in=groups))
    return user


@dataclass
class World:
    users: dict[str, User | None]
    keys: dict[str, str]
    params: dict[str, Any]


@pytest.fixture
def world(deployment, client_user, api_key, enqueue, stored_champion) -> World:
    """Every role, and one object of each kind a path names: client_a's case (in review),
    its task, a scheduled change, a model version and an image of its reference set,
    client_a's webhook endpoint and a delivery to it."""
    client_b = _user("client-b", "api client")
    task = enqueue()
    change = policy_schedule(deployment=deployment, actor=None, reason="later",
                             effective_at=timezone.now() + timedelta(days=1), **POLICY)
    endpoint = endpoint_create(owner=client_user, url="http://127.0.0.1:9/hook",
                               event_types=["case.decided"])
    delivery = endpoint_ping(endpoint, now=timezone.now())
    reference = ReferenceImage(
        reference_set=ReferenceSet.objects.create(model_version=stored_champion, origin="upload",
                                                  size=1, by_label={"1": 1}),
        label="1")
    reference.image.save("references/matrix.png", ContentFile(png_bytes()))
    return World(
        users={"anonymous": None, "client_a": client_user, "client_b": client_b,
               "reviewer": _user("reviewer", "reviewer"),
               "senior": _user("senior", "senior reviewer"),
               "rollout_admin": _user("rollout-admin", "rollout admin", staff=True),
               "model_admin": _user("model-admin", "model admin", staff=True),
               "superuser": _user("root", superuser=True)},
        keys={"client_a": api_key,
              "client_b": api_key_create(user=client_b, name="b",
                                         deployments=[deployment])[1]},
        params={"slug": deployment.slug, "case_id": task.case_id, "task_id": task.pk,
                "change_id": change.pk, "version_id": stored_champion.pk,
                "endpoint_id": endpoint.pk, "delivery_id": delivery.pk, "fmt": "csv",
                "image_id": reference.pk})


# What a refused request must leave as it was: each table's rows, by a few fields that say
# what a row is and where it stands.
WATCHED: list[tuple[type, tuple[str, ...]]] = [
    (Deployment, ("slug", "name")),
    (User, ("username", "is_active", "is_staff", "is_superuser")),
    (ApiKey, ("user_id", "prefix", "revoked_at")),
    (Case, ("status", "external_id")),
    (ReviewTask, ("status", "claimed_by_id", "lease_token")),
    (Review, ("task_id", "answer")),
    (Decision, ("case_id", "label", "source")),
    (PolicyVersion, ("deployment_id", "version", "stage")),
    (ScheduledChange, ("status",)),
    (ModelVersion, ("is_champion", "is_active")),
    (WebhookEndpoint, ("url", "description", "secret", "is_active")),
    (WebhookDelivery, ("status", "next_attempt_at")),
]


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    return {model.__name__: list(model.objects.order_by("pk").values_list("pk", *fields))
            for model, fields in WATCHED}


def _login_paths() -> set[str]:
    return {resolve_url(settings.LOGIN_URL), reverse("admin:login")}


def outcome(response: Any) -> Expected:
    if response.status_code == 302:
        target = response["Location"].split("?")[0]
        if target in _login_paths():
            return LOGIN
    return int(response.status_code)


def _client(world: World, role: str, *, api: bool) -> Client:
    user = world.users[role]
    if user is None:
        return Client()
    if api and role in world.keys:
        return Client(HTTP_AUTHORIZATION=f"Api-Key {world.keys[role]}")
    client = Client()
    client.force_login(user)
    return client


def _send(client: Client, url: str, call: Call) -> Any:
    body = call.body() if callable(call.body) else call.body
    send = getattr(client, call.method.lower())
    if call.json:
        return send(url, body, content_type="application/json")
    return send(url, body) if body is not None else send(url)


@dataclass(frozen=True)
class Cell:
    route: str
    role: str
    method: str
    expected: Expected
    got: Expected
    changed: list[str]


def _table(cells: list[Cell]) -> str:
    lines = [f"{'route':28} {'role':14} {'method':7} {'expected':9} {'got':9} changed"]
    lines += [f"{c.route:28} {c.role:14} {c.method:7} {c.expected!s:9} {c.got!s:9} "
              f"{', '.join(c.changed)}" for c in cells]
    return "\n".join(lines)


@pytest.mark.parametrize("key", sorted(MATRIX))
def test_each_role_gets_what_it_may(key, world):
    route = next((r for r in project_routes() if r.key == key), None)
    assert route is not None, f"{key} is not a route any more: remove it from MATRIX"
    url = reverse(key, kwargs={name: world.params[name] for name in route.params})
    api = route.pattern.startswith("api/")
    wrong: list[Cell] = []
    for call in MATRIX[key]:
        for role in ROLES:
            savepoint = transaction.savepoint()
            try:
                client = _client(world, role, api=api)
                before = snapshot()
                got = outcome(_send(client, url, call))
                after = snapshot()
            finally:
                transaction.savepoint_rollback(savepoint)
            refused = got == LOGIN or (isinstance(got, int) and got >= 400)
            changed = [table for table in before if before[table] != after[table]]
            if got != call.expected[role] or (refused and changed):
                wrong.append(Cell(key, role, call.method, call.expected[role], got,
                                  changed if refused else []))
    if wrong:
        pytest.fail(f"{url}: cells that differ\n{_table(wrong)}", pytrace=False)
