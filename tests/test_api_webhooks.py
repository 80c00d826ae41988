"""The webhook endpoints API: a client manages its own endpoints, reads their delivery log and
sends deliveries again; another account's endpoint is a 404, a bad request a 400 that stores
nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from reviewplatform.api_pagination import BAD_CURSOR
from reviewplatform.services import api_key_create
from tests.conftest import _user
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures
from tests.webhook_receiver import *  # noqa: F403 - the receiver and its fixtures
from webhooks.delivery import drain
from webhooks.models import WebhookDelivery, WebhookEndpoint
from webhooks.services import endpoint_create

URL = "/api/v1/webhooks/"


def client_for(user, deployment) -> APIClient:
    api = APIClient()
    key = api_key_create(user=user, name="key", deployments=[deployment])[1]
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return api


@pytest.fixture
def other_api(deployment) -> APIClient:
    return client_for(_user("other-client", "api client"), deployment)


def created(api, receiver, **body):
    response = api.post(URL, {"url": receiver.url(), **body}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_a_client_registers_an_endpoint_and_sees_its_secret_once(api, receiver, client_user):
    body = created(api, receiver, description="orders service")

    stored = WebhookEndpoint.objects.get()
    assert body["secret"] == stored.secret
    assert body["secret"].startswith("whsec_") and len(body["secret"]) == 6 + 44
    assert (body["url"], body["event_types"], body["description"], body["is_active"]) == (
        receiver.url(), ["case.decided"], "orders service", True)
    assert stored.owner == client_user
    listed = api.get(URL).json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert "secret" not in listed[0]
    one = api.get(f"{URL}{body['id']}/")
    assert one.status_code == 200 and "secret" not in one.json()


def test_a_client_changes_and_deletes_its_endpoint(api, receiver):
    body = created(api, receiver)

    changed = api.patch(f"{URL}{body['id']}/", {"event_types": ["case.queued", "case.decided"],
                                                "is_active": False}, format="json")

    assert changed.status_code == 200, changed.content
    assert changed.json()["event_types"] == ["case.queued", "case.decided"]
    assert changed.json()["disabled_reason"] == "turned off by its owner"
    again = api.patch(f"{URL}{body['id']}/", {"is_active": True}, format="json").json()
    assert (again["is_active"], again["disabled_reason"]) == (True, "")
    assert api.delete(f"{URL}{body['id']}/").status_code == 204
    assert not WebhookEndpoint.objects.exists()


@pytest.mark.parametrize("body, field, words", [
    ({"url": "ftp://example.com/hook"}, "url", "starts with https://"),
    ({"url": "https://user:pw@example.com/hook"}, "url", "no user name or password"),
    ({"url": "not a url"}, "url", "starts with https://"),
    # Every delivery to these would fail: refused when the endpoint is saved.
    ({"url": "http://127.0.0.1:99999/"}, "url", "a port, if any, from 1 to 65535"),
    ({"url": "http://127.0.0.1:0/"}, "url", "a port, if any, from 1 to 65535"),
    ({"url": "http://example.com:http/"}, "url", "a port, if any, from 1 to 65535"),
    ({"url": "http://[::1/hook"}, "url", "an IPv6 address in [brackets]"),
    ({"url": "https://exa mple.com/hook"}, "url", "one an HTTP client can send to"),
    ({"url": "https://example.com/hook", "event_types": ["case.eaten"]}, "event_types[0]",
     "is not a valid choice"),
    ({"url": "https://example.com/hook", "event_types": []}, "event_types", "empty"),
    ({"event_types": ["case.decided"]}, "url", "required"),
])
def test_it_refuses_a_bad_endpoint_storing_nothing(api, body, field, words):
    response = api.post(URL, body, format="json")

    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == "invalid"
    assert words in " ".join(error["fields"][field])
    assert not WebhookEndpoint.objects.exists()


def test_it_refuses_a_port_out_of_range_on_a_change_keeping_the_url(api, receiver):
    body = created(api, receiver)

    response = api.patch(f"{URL}{body['id']}/", {"url": "http://127.0.0.1:99999/"},
                         format="json")

    assert response.status_code == 400, response.content
    assert "a port, if any, from 1 to 65535" in response.json()["fields"]["url"][0]
    assert WebhookEndpoint.objects.get().url == receiver.url()


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/hook", "http://localhost/hook",
                                 "http://10.1.2.3/hook", "http://[::1]/hook",
                                 "http://169.254.169.254/latest/meta-data/"])
def test_it_refuses_a_private_address_where_they_are_not_allowed(api, settings, url):
    settings.WEBHOOK_ALLOW_PRIVATE_ADDRESSES = False

    response = api.post(URL, {"url": url}, format="json")

    assert response.status_code == 400, response.content
    assert "webhooks go to public addresses only" in response.json()["fields"]["url"][0]
    assert not WebhookEndpoint.objects.exists()


def test_it_refuses_an_endpoint_past_the_most_an_account_may_have(api, receiver, settings):
    settings.WEBHOOK_ENDPOINTS_MAX = 2
    created(api, receiver)
    created(api, receiver)

    response = api.post(URL, {"url": receiver.url()}, format="json")

    assert response.status_code == 409, response.content
    assert response.json()["message"] == ("an account has at most 2 webhook endpoints; "
                                           "delete one first")
    assert WebhookEndpoint.objects.count() == 2


def test_another_accounts_endpoint_is_not_found(api, other_api, receiver):
    body = created(api, receiver)
    base = f"{URL}{body['id']}/"

    assert other_api.get(URL).json() == []
    for method, path in (("get", ""), ("patch", ""), ("delete", ""), ("post", "ping/"),
                         ("post", "rotate-secret/"), ("get", "deliveries/")):
        response = getattr(other_api, method)(base + path, {}, format="json")
        assert response.status_code == 404, (method, path, response.content)
        assert response.json()["code"] == "not_found"
    stored = WebhookEndpoint.objects.get()
    assert (stored.is_active, stored.secret) == (True, body["secret"])
    assert not WebhookDelivery.objects.exists()


def test_who_may_manage_endpoints(reviewer, deployment):
    anonymous = APIClient()
    assert anonymous.get(URL).status_code == 401
    response = client_for(reviewer, deployment).post(
        URL, {"url": "https://example.com/hook"}, format="json")
    assert response.status_code == 403
    assert "webhooks.add_webhookendpoint" in response.json()["message"]
    assert not WebhookEndpoint.objects.exists()


def test_a_rotated_secret_signs_beside_the_new_one_for_a_while(api, receiver, route):
    body = created(api, receiver)

    rotated = api.post(f"{URL}{body['id']}/rotate-secret/").json()

    assert rotated["secret"] != body["secret"]
    assert rotated["previous_secret_until"] is not None
    route("7")
    drain()
    (got,) = receiver.requests
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    got.verify(rotated["secret"])
    got.verify(body["secret"])


def test_a_ping_is_sent_and_shows_in_the_delivery_log(api, receiver):
    body = created(api, receiver)

    ping = api.post(f"{URL}{body['id']}/ping/")

    assert ping.status_code == 202, ping.content
    assert ping.json()["status"] == "pending"
    drain()
    (got,) = receiver.requests
    payload = got.verify(body["secret"])
    assert payload["type"] == "webhook.ping"
    assert payload["data"]["endpoint_id"] == body["id"]
    log = api.get(f"{URL}{body['id']}/deliveries/").json()
    (delivery,) = log["results"]
    assert delivery["event_id"] == got.headers["webhook-id"]
    assert (delivery["status"], delivery["attempts"], delivery["next_attempt_at"]) == (
        "succeeded", 1, None)
    assert delivery["payload"] == payload
    (attempt,) = delivery["attempt_log"]
    assert (attempt["status_code"], attempt["error"], attempt["response_excerpt"]) == (
        200, "", "ok")


def test_a_client_sends_a_delivery_again(api, receiver, route):
    body = created(api, receiver)
    route("7")
    drain()
    delivery = WebhookDelivery.objects.get()
    path = f"{URL}{body['id']}/deliveries/{delivery.pk}/"

    again = api.post(path + "redeliver/")

    assert again.status_code == 202, again.content
    assert again.json()["status"] == "pending"
    refused = api.post(path + "redeliver/")  # still being sent
    assert refused.status_code == 409
    assert refused.json()["code"] == "conflict"
    drain()
    first, second = receiver.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert first.body == second.body
    shown = api.get(path).json()
    assert (shown["status"], shown["attempts"]) == ("succeeded", 2)
    assert len(shown["attempt_log"]) == 2


def test_the_delivery_log_filters_by_status_and_refuses_an_unknown_one(api, receiver):
    body = created(api, receiver)
    api.post(f"{URL}{body['id']}/ping/")
    base = f"{URL}{body['id']}/deliveries/"

    assert len(api.get(base, {"status": "pending"}).json()["results"]) == 1
    assert api.get(base, {"status": "succeeded"}).json()["results"] == []
    response = api.get(base, {"status": "lost"})
    assert response.status_code == 400
    assert response.json()["fields"]["status"] == [
        "lost is not one of pending, succeeded, failed"]


@pytest.mark.parametrize("query, field, message", [
    ("?cursor=zzz", "cursor", BAD_CURSOR),
    ("?cursor=cD0x", "cursor", BAD_CURSOR),  # "p=1": an id, but in no link of this log
    ("?cursor=cD1mb28=", "cursor", BAD_CURSOR),  # "p=foo"
    ("?page_size=0", "page_size", "page_size must be a whole number from 1 to 200"),
    ("?page_size=²", "page_size", "page_size must be a whole number from 1 to 200"),
    ("?page_size=201", "page_size", "page_size must be a whole number from 1 to 200"),
])
def test_the_delivery_log_refuses_a_bad_cursor_or_page_size(api, receiver, query, field,
                                                            message):
    body = created(api, receiver)

    response = api.get(f"{URL}{body['id']}/deliveries/{query}")

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid"
    assert response.json()["fields"] == {field: [message]}


def test_the_delivery_log_pages_as_asked(api, receiver):
    body = created(api, receiver)
    for _ in range(3):
        api.post(f"{URL}{body['id']}/ping/")
    base = f"{URL}{body['id']}/deliveries/"

    first = api.get(f"{base}?page_size=2").json()
    second = api.get(first["next"]).json()

    assert len(first["results"]) == 2 and len(second["results"]) == 1
    ids = [d["id"] for d in first["results"] + second["results"]]
    assert ids == sorted(WebhookDelivery.objects.values_list("id", flat=True), reverse=True)


def test_the_admin_shows_webhook_records_to_read_only(admin_client, receiver, route,
                                                       client_user):
    endpoint = endpoint_create(owner=client_user, url=receiver.url(),
                               event_types=["case.decided"])
    route("7")
    drain()
    delivery = WebhookDelivery.objects.get()
    pages = [f"/admin/webhooks/webhookendpoint/{endpoint.pk}/change/",
             f"/admin/webhooks/webhookdelivery/{delivery.pk}/change/",
             f"/admin/reviewplatform/caseevent/{delivery.event_id}/change/"]

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
        assert endpoint.secret not in response.content.decode()
        assert admin_client.post(page, {"url": "https://example.com/x"}).status_code == 403
        assert admin_client.post(page.replace("change", "delete"),
                                 {"post": "yes"}).status_code == 403
    endpoint.refresh_from_db()
    assert endpoint.url == receiver.url()
    assert WebhookDelivery.objects.filter(status="succeeded").count() == 1
