"""/admin/: records that must not change can't, model versions change only through their
audited services, and a deployment is created only through `deployment_create`."""

from __future__ import annotations

import html

import pytest
from django.contrib.auth.models import Group, User
from django.forms.models import model_to_dict
from django.test import Client

from inference.models import ModelVersion, ModelVersionEvent, Prediction
from inference.services import model_version_set_active
from reviewplatform import admin as reviewplatform_admin
from reviewplatform.errors import Conflict
from reviewplatform.models import Decision, Deployment, Region, Review, ReviewTask
from rollout.models import PolicyVersion
from rollout.services import deployment_create
from tests.conftest import CAPTURED_AT
from tests.reports_factory import decide, sim_model

READ_ONLY = [
    "rollout.policyversion",
    "reviewplatform.decision",
    "reviewplatform.review",
    "reviewplatform.reviewtask",
    "inference.prediction",
    "inference.modelversionevent",
]

# Values a form post would change on any of the read-only models, were it accepted.
TAMPERED = {"label": "7", "answer": "7", "reason": "tampered", "stage": "full",
            "status": "failed", "action": "promoted", "source": "model", "confidence": "0.01",
            "seconds": "1", "audit_rate": "1"}


def url(label: str, view: str, *args: object) -> str:
    app, model = label.split(".")
    path = f"/admin/{app}/{model}/"
    if view == "add":
        return f"{path}add/"
    if view == "change":
        return f"{path}{args[0]}/change/"
    if view == "delete":
        return f"{path}{args[0]}/delete/"
    return path


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def site(admin_user) -> Client:
    """The admin site, signed in as a superuser."""
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def versions(deployment) -> tuple[ModelVersion, ModelVersion]:
    """A champion and a challenger. Their artifacts are never loaded: promotion and retirement
    only change flags."""
    return sim_model(deployment, "champion"), sim_model(deployment, "challenger", champion=False)


@pytest.fixture
def records(deployment, versions, admin_user, client_user, reviewer) -> dict:
    """One row of each read-only model, keyed by its admin label."""
    champion, challenger = versions
    case = decide(deployment, champion, submitted_by=client_user, reviewer=reviewer,
                  captured_at=CAPTURED_AT, model_label="3", human="3")
    model_version_set_active(version=challenger, active=False, actor=admin_user,
                             reason="no longer needed")
    return {
        "rollout.policyversion": PolicyVersion.objects.get(deployment=deployment),
        "reviewplatform.decision": Decision.objects.get(case=case),
        "reviewplatform.review": Review.objects.get(case=case),
        "reviewplatform.reviewtask": ReviewTask.objects.get(case=case),
        "inference.prediction": Prediction.objects.get(case=case),
        "inference.modelversionevent": ModelVersionEvent.objects.get(model_version=challenger),
    }


def fields_of(row) -> dict:
    row.refresh_from_db()
    return model_to_dict(row)


# Read-only records


@pytest.mark.parametrize("label", READ_ONLY)
def test_it_shows_a_read_only_record_as_a_view_page(site, records, label):
    row = records[label]

    response = site.get(url(label, "change", row.pk))

    assert response.status_code == 200
    assert response.context["title"] == f"View {row._meta.verbose_name}"
    assert response.context["original"] == row
    assert 'name="_save"' not in response.content.decode()


@pytest.mark.parametrize("label", READ_ONLY)
def test_it_refuses_to_change_a_read_only_record(site, records, label):
    row = records[label]
    before = fields_of(row)

    response = site.post(url(label, "change", row.pk), TAMPERED)

    assert response.status_code == 403
    assert fields_of(row) == before


@pytest.mark.parametrize("label", READ_ONLY)
def test_it_refuses_to_add_a_read_only_record(site, records, label):
    model = type(records[label])
    count = model.objects.count()

    assert site.get(url(label, "add")).status_code == 403
    assert site.post(url(label, "add"), TAMPERED).status_code == 403
    assert model.objects.count() == count


@pytest.mark.parametrize("label", READ_ONLY)
def test_it_refuses_to_delete_a_read_only_record(site, records, label):
    row = records[label]
    before = fields_of(row)

    assert site.get(url(label, "delete", row.pk)).status_code == 403
    assert site.post(url(label, "delete", row.pk), {"post": "yes"}).status_code == 403
    # Nor through the changelist's bulk action.
    site.post(url(label, "changelist"),
              {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"})

    assert fields_of(row) == before


# Model versions


def act(client: Client, action: str, *selected: ModelVersion, follow: bool = True):
    return client.post(url("inference.modelversion", "changelist"),
                       {"action": action, "_selected_action": [v.pk for v in selected]},
                       follow=follow)


def test_it_promotes_a_challenger_and_audits_it(site, versions, admin_user):
    champion, challenger = versions

    response = act(site, "promote", challenger)

    assert response.status_code == 200
    assert messages_of(response) == ["digits/challenger is now the champion"]
    challenger.refresh_from_db()
    champion.refresh_from_db()
    assert (challenger.is_champion, challenger.is_active) == (True, True)
    assert (champion.is_champion, champion.is_active) == (False, True)
    promoted = ModelVersionEvent.objects.get(model_version=challenger)
    assert promoted.action == ModelVersionEvent.Action.PROMOTED
    assert promoted.actor == admin_user
    assert promoted.reason == "promoted from /admin/ by admin"
    assert ModelVersionEvent.objects.get(model_version=champion).action == "demoted"


def test_it_retires_and_reactivates_a_challenger_with_audit_rows(site, versions):
    _, challenger = versions

    act(site, "retire", challenger)
    challenger.refresh_from_db()
    assert challenger.is_active is False

    act(site, "reactivate", challenger)
    challenger.refresh_from_db()
    assert challenger.is_active is True

    events = ModelVersionEvent.objects.filter(model_version=challenger).order_by("id")
    assert [(e.action, e.reason) for e in events] == [
        ("retired", "retired from /admin/ by admin"),
        ("reactivated", "reactivated from /admin/ by admin"),
    ]


def test_it_shows_a_refusal_of_the_service_as_an_error_message(site, versions):
    champion, _ = versions

    response = act(site, "retire", champion)

    assert response.status_code == 200
    assert messages_of(response) == [
        "digits/champion: the champion cannot be retired; promote another version first"]
    champion.refresh_from_db()
    assert (champion.is_champion, champion.is_active) == (True, True)
    assert not ModelVersionEvent.objects.exists()


def test_it_promotes_only_one_version_per_deployment_at_a_time(site, deployment, versions):
    champion, challenger = versions
    third = sim_model(deployment, "third", champion=False)

    response = act(site, "promote", challenger, third)

    assert len(messages_of(response)) == 2
    assert all("select one version per deployment" in m for m in messages_of(response))
    assert list(ModelVersion.objects.filter(is_champion=True)) == [champion]
    assert not ModelVersionEvent.objects.exists()


def test_it_offers_the_actions_only_to_model_admins(versions):
    champion, challenger = versions
    rollout_admin = User.objects.create_user(username="rollout-admin", is_staff=True)
    rollout_admin.groups.set(Group.objects.filter(name="rollout admin"))
    client = Client()
    client.force_login(rollout_admin)

    page = client.get(url("inference.modelversion", "changelist"))
    act(client, "promote", challenger)

    assert page.status_code == 200
    assert page.context["action_form"] is None
    assert list(ModelVersion.objects.filter(is_champion=True)) == [champion]
    assert not ModelVersionEvent.objects.exists()


def test_it_keeps_the_champion_and_active_flags_out_of_the_change_form(site, versions):
    _, challenger = versions

    response = site.post(url("inference.modelversion", "change", challenger.pk),
                         {"name": "challenger", "notes": "trained on more data",
                          "is_champion": "on", "is_active": ""})

    assert response.status_code == 302
    challenger.refresh_from_db()
    assert challenger.notes == "trained on more data"
    assert (challenger.is_champion, challenger.is_active) == (False, True)


def test_it_refuses_to_delete_a_model_version(site, versions):
    _, challenger = versions

    response = site.post(url("inference.modelversion", "delete", challenger.pk), {"post": "yes"})

    assert response.status_code == 403
    assert ModelVersion.objects.filter(pk=challenger.pk).exists()


# Deployments

BEARS = {
    "slug": "bears",
    "name": "Bear warning",
    "labels": "grizzly, black, teddy",
    "regions": "north,North,Europe/Oslo\nwest, West coast, America/Los_Angeles\n",
}


def test_it_asks_for_the_inputs_of_the_service_on_the_add_page(site):
    response = site.get(url("reviewplatform.deployment", "add"))

    assert response.status_code == 200
    assert list(response.context["adminform"].form.fields) == [
        "slug", "name", "labels", "regions"]
    assert response.context["inline_admin_formsets"] == []


def test_it_creates_a_deployment_with_its_regions_and_first_policy_version(site, admin_user):
    response = site.post(url("reviewplatform.deployment", "add"), BEARS)

    assert response.status_code == 302
    bears = Deployment.objects.get(slug="bears")
    assert (bears.name, bears.labels) == ("Bear warning", ["grizzly", "black", "teddy"])
    assert list(bears.regions.values_list("code", "name", "timezone")) == [
        ("north", "North", "Europe/Oslo"), ("west", "West coast", "America/Los_Angeles")]
    (policy,) = PolicyVersion.objects.filter(deployment=bears)
    assert (policy.version, policy.stage, policy.author) == (1, "shadow", admin_user)
    assert response["Location"] == url("reviewplatform.deployment", "changelist")


def test_it_shows_a_bad_time_zone_as_a_form_error_and_creates_nothing(site):
    response = site.post(url("reviewplatform.deployment", "add"),
                         {**BEARS, "regions": "north,North,Mars/Olympus_Mons"})

    assert response.status_code == 200
    form = response.context["adminform"].form
    assert form.errors["regions"] == ["line 1: unknown time zone 'Mars/Olympus_Mons'"]
    assert not Deployment.objects.filter(slug="bears").exists()
    assert not Region.objects.filter(deployment__slug="bears").exists()
    assert not PolicyVersion.objects.exists()


def test_it_shows_a_malformed_region_line_as_a_form_error(site):
    response = site.post(url("reviewplatform.deployment", "add"),
                         {**BEARS, "regions": "north,North,Europe/Oslo\nnorth Europe/Oslo"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["regions"] == [
        "line 2: expected code,name,Time/Zone, got 'north Europe/Oslo'"]
    assert not Deployment.objects.exists()


def _taken_meanwhile(**kwargs):
    """Another admin creates the same slug between the form's checks and the service's."""
    deployment_create(slug=kwargs["slug"], name="Someone else's", labels=["a"],
                      regions=[], actor=None)
    return deployment_create(**kwargs)


def _refused(**kwargs):
    raise Conflict("deployments are frozen for the migration", field="slug")


@pytest.mark.parametrize(("service", "error"), [
    (_taken_meanwhile, "Deployment with this Slug already exists."),
    (_refused, "deployments are frozen for the migration"),
])
def test_it_shows_a_refusal_of_the_service_as_a_form_error(site, monkeypatch, service, error):
    monkeypatch.setattr(reviewplatform_admin, "deployment_create", service)

    response = site.post(url("reviewplatform.deployment", "add"), BEARS)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["slug"] == [error]
    assert html.escape(error) in response.content.decode()
    assert not Deployment.objects.exists()
    assert not PolicyVersion.objects.exists()


def test_it_changes_a_deployments_settings_but_not_its_slug_labels_or_region_codes(
        site, deployment):
    page = site.get(url("reviewplatform.deployment", "change", deployment.pk))
    assert page.status_code == 200
    assert list(page.context["adminform"].form.fields) == [
        "name", "label_keys", "urgent_labels", "review_mode", "second_opinion_rate",
        "gold_rate", "image_retention_days", "guidelines"]
    regions = list(deployment.regions.all())
    data = {
        "slug": "renamed", "labels": '["x"]', "name": "Digits, v2", "urgent_labels": '["3"]',
        "label_keys": "{}",
        "review_mode": "assisted", "second_opinion_rate": "0.1", "gold_rate": "0.05",
        "image_retention_days": "90", "guidelines": "Answer the *digit*.",
        "regions-TOTAL_FORMS": str(len(regions) + 1),
        "regions-INITIAL_FORMS": str(len(regions)),
        "regions-MIN_NUM_FORMS": "0", "regions-MAX_NUM_FORMS": "1000",
    }
    for i, region in enumerate(regions):
        data |= {f"regions-{i}-id": str(region.pk), f"regions-{i}-deployment": str(deployment.pk),
                 f"regions-{i}-code": f"{region.code}-renamed", f"regions-{i}-name": region.name,
                 f"regions-{i}-timezone": region.timezone}
    new = len(regions)
    data |= {f"regions-{new}-deployment": str(deployment.pk), f"regions-{new}-code": "south",
             f"regions-{new}-name": "South", f"regions-{new}-timezone": "Africa/Nairobi"}

    response = site.post(url("reviewplatform.deployment", "change", deployment.pk), data)

    assert response.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.slug, deployment.labels[:2]) == ("digits", ["0", "1"])
    assert (deployment.name, deployment.urgent_labels, deployment.review_mode) == (
        "Digits, v2", ["3"], "assisted")
    assert (deployment.second_opinion_rate, deployment.gold_rate) == (0.1, 0.05)
    assert (deployment.image_retention_days, deployment.guidelines) == (90, "Answer the *digit*.")
    assert sorted(deployment.regions.values_list("code", flat=True)) == [
        "east", "north", "south", "west"]
