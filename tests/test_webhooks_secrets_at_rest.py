"""Webhook endpoints' signing secrets are stored encrypted (reviewplatform.encryption): a copy of
the database does not give them away, signing reads them back, the keys rotate, and a key lost is
said rather than signed around."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone

from tests.webhook_receiver import *  # noqa: F403 - the receiver and its fixtures
from webhooks.models import WebhookEndpoint
from webhooks.services import secret_rotate

migration = importlib.import_module("webhooks.migrations.0002_secrets_encrypted")


def stored(endpoint: WebhookEndpoint) -> tuple[str, str]:
    """The two secrets' columns as the database holds them."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret, previous_secret FROM webhooks_webhookendpoint "
                       "WHERE id = %s", [endpoint.pk])
        return cursor.fetchone()


def read(endpoint: WebhookEndpoint) -> WebhookEndpoint:
    return WebhookEndpoint.objects.get(pk=endpoint.pk)


def test_the_secret_given_to_the_client_is_stored_encrypted(api, receiver):
    response = api.post("/api/v1/webhooks/", {"url": receiver.url()}, format="json")
    secret = response.json()["secret"]

    endpoint = WebhookEndpoint.objects.get()
    column, previous = stored(endpoint)
    assert secret.startswith("whsec_")
    assert secret not in column and secret.removeprefix("whsec_") not in column
    assert column.startswith("gAAAAA")  # a Fernet token
    assert endpoint.secret == secret
    assert previous != "" and endpoint.previous_secret == ""


def test_a_rotated_secret_and_the_one_before_are_both_encrypted(endpoint):
    first = endpoint.secret

    secret_rotate(endpoint, now=timezone.now())

    again = read(endpoint)
    column, previous_column = stored(endpoint)
    assert again.previous_secret == first and again.secret not in ("", first)
    assert first not in previous_column and again.secret not in column


def test_secret_key_rotated_with_the_old_one_kept_reads_every_secret(endpoint, settings):
    secret, old_token = endpoint.secret, stored(endpoint)[0]
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40

    again = read(endpoint)
    assert again.secret == secret
    again.save()  # encrypted again, with the newest key

    settings.SECRET_KEY_FALLBACKS = []
    assert stored(endpoint)[0] != old_token
    assert read(endpoint).secret == secret


def test_field_encryption_keys_rotate_newest_first(endpoint, settings):
    secret = endpoint.secret
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    endpoint.save()
    assert Fernet(old).decrypt(stored(endpoint)[0].encode()).decode() == secret

    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    read(endpoint).save()
    settings.FIELD_ENCRYPTION_KEYS = [new]

    assert read(endpoint).secret == secret
    assert Fernet(new).decrypt(stored(endpoint)[0].encode()).decode() == secret


def test_a_key_replaced_without_the_old_one_is_said_not_signed_around(endpoint, settings):
    settings.SECRET_KEY = "a-new-secret-key-" + "y" * 40

    with pytest.raises(ImproperlyConfigured, match="FIELD_ENCRYPTION_KEYS"):
        read(endpoint)


def test_the_migration_encrypts_secrets_stored_in_clear_and_back(endpoint):
    secret = endpoint.secret
    with connection.cursor() as cursor:  # as the table held them before
        cursor.execute("UPDATE webhooks_webhookendpoint SET secret = %s, previous_secret = '' "
                       "WHERE id = %s", [secret, endpoint.pk])
    editor = SimpleNamespace(connection=connection)

    migration.secrets_encrypt(None, editor)
    column = stored(endpoint)[0]
    assert column.startswith("gAAAAA") and read(endpoint).secret == secret
    migration.secrets_encrypt(None, editor)  # a second run leaves it as it is
    assert stored(endpoint)[0] == column

    migration.secrets_decrypt(None, editor)
    assert stored(endpoint) == (secret, "")
