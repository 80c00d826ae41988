"""The policy history, the decisions, the reviews and the case events cannot be changed or
deleted through any page, the admin or the API, not even by a superuser: they are written by the
services only, and stay."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.forms.models import model_to_dict
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from reviewplatform.models import CaseEvent, Decision, Review, WithdrawnAnswer
from rollout.models import PolicyVersion
from rollout.services import policy_pause
from tests.conftest import CAPTURED_AT
from tests.reports_factory import decide, sim_model

PROTECTED = [PolicyVersion, Decision, Review, CaseEvent, WithdrawnAnswer]

# The one API route that changes and deletes with PATCH and DELETE: a client's own webhook
# endpoint, none of the records above.
WEBHOOK_ENDPOINT_ROUTE = "api/v1/webhooks/<id:endpoint_id>/"


def snapshot() -> dict[str, dict[int, dict]]:
    """Every protected row, as its fields."""
    return {model.__name__: {row.pk: model_to_dict(row) for row in model.objects.all()}
            for model in PROTECTED}


@pytest.fixture
def history(deployment, admin_user, client_user, reviewer) -> dict:
    """Two policy versions, a human decision with its review, and a case event."""
    model = sim_model(deployment, "champion")
    case = decide(deployment, model, submitted_by=client_user, reviewer=reviewer,
                  captured_at=CAPTURED_AT, model_label="3", human="3")
    policy_pause(deployment=deployment, actor=admin_user, reason="a second version")
    CaseEvent.objects.create(case=case, type=CaseEvent.Type.DECIDED, data={"label": "3"})
    WithdrawnAnswer.objects.create(task=case.review_tasks.first(), case=case, reviewer=reviewer,
                                   answer="5", answered_at=CAPTURED_AT)
    rows = {model.__name__: model.objects.first() for model in PROTECTED}
    assert all(rows.values())
    return {"case": case, **rows}


@pytest.fixture
def site(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


# The admin


@pytest.mark.parametrize("model", PROTECTED, ids=lambda m: m.__name__)
def test_the_admin_refuses_to_change_or_delete_a_record(site, history, model):
    row = history[model.__name__]
    before = snapshot()
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"

    answers = [
        site.post(f"{base}{row.pk}/change/", {"label": "7", "reason": "tampered"}).status_code,
        site.get(f"{base}{row.pk}/delete/").status_code,
        site.post(f"{base}{row.pk}/delete/", {"post": "yes"}).status_code,
    ]
    site.post(base, {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})

    # 403 where the model is in the admin (to view), 404 where it is not there at all.
    expected = 403 if model in admin.site._registry else 404
    assert answers == [expected] * 3
    assert snapshot() == before


def admin_models() -> list[type]:
    return sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.mark.parametrize("model", admin_models(), ids=lambda m: m._meta.label)
def test_deleting_any_other_record_in_the_admin_takes_no_history_with_it(site, history,
                                                                          model):
    """A case, a deployment, a region or a user would take decisions and reviews with it."""
    before = snapshot()
    base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
    pks = list(model.objects.values_list("pk", flat=True))

    for pk in pks:
        site.post(f"{base}{pk}/delete/", {"post": "yes"})
    site.post(base, {"action": "delete_selected", "_selected_action": pks, "post": "yes"})

    assert snapshot() == before


# The pages and the API


def routes(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, object]]:
    """Every route of the site but the admin's, as (route, view)."""
    found: list[tuple[str, object]] = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if not route.startswith("admin/"):
                found.extend(routes(entry, route))
        elif isinstance(entry, URLPattern):
            found.append((route, entry.callback))
    return found


def path_of(route: str, history: dict) -> str:
    case = history["case"]
    values = {"<slug:slug>": case.deployment.slug, "<id:case_id>": str(case.pk),
              "<id:task_id>": str(history["Review"].task_id), "<str:fmt>": "csv",
              "<id:endpoint_id>": "1", "<id:delivery_id>": "1", "<id:change_id>": "1",
              "<id:version_id>": "1", "<id:image_id>": "1"}
    for converter, value in values.items():
        route = route.replace(converter, value)
    assert "<" not in route, f"no value for a part of {route}"
    return "/" + route


def test_the_route_walk_reaches_the_policy_and_case_routes(history):
    found = {route for route, _ in routes()}

    assert "api/v1/deployments/<slug:slug>/policy/" in found
    assert "api/v1/deployments/<slug:slug>/policy/history/" in found
    assert "api/v1/cases/<id:case_id>/" in found
    assert "deployments/<slug:slug>/rollout/rollback/" in found
    assert not any(route.startswith("admin/") for route in found)


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_no_route_changes_or_deletes_a_record(history, admin_user, api, method):
    staff = APIClient()
    staff.force_authenticate(admin_user)
    before = snapshot()
    answers: dict[str, set[int]] = {}

    for route, _view in routes():
        path = path_of(route, history)
        for client in (staff, api):
            response = getattr(client, method)(path, {"label": "7", "stage": "full"},
                                               format="json")
            answers.setdefault(route, set()).add(response.status_code)

    assert snapshot() == before
    for route, statuses in answers.items():
        if route.startswith("api/v1/") and route != WEBHOOK_ENDPOINT_ROUTE:
            # The API knows no such method here (or the caller no such thing).
            assert statuses <= {401, 403, 404, 405}, (route, statuses)
            assert not any(200 <= status < 300 for status in statuses), route


def test_the_policy_history_answers_reads_only(history, admin_user):
    staff = APIClient()
    staff.force_authenticate(admin_user)
    url = f"/api/v1/deployments/{history['case'].deployment.slug}/policy/history/"

    assert staff.get(url).status_code == 200
    for method in ("post", "put", "patch", "delete"):
        assert getattr(staff, method)(url, {}, format="json").status_code == 405, method
