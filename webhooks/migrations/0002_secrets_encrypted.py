"""Webhook endpoints' secrets stored encrypted (reviewplatform.encryption): the columns become
text, then each secret stored in clear is encrypted in place (and decrypted, going back)."""

from django.db import migrations

import reviewplatform.encryption
from reviewplatform.encryption import decrypt, encrypt

TABLE = "webhooks_webhookendpoint"
IN_CLEAR = "whsec_"  # every secret the platform made begins so; a Fernet token never does


def _rewrite(schema_editor, change) -> None:
    """Apply `change` to each row's two secrets, in SQL: the model's fields would decrypt."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT id, secret, previous_secret FROM {TABLE}")  # noqa: S608
        for row_id, secret, previous in cursor.fetchall():
            cursor.execute(f"UPDATE {TABLE} SET secret = %s, previous_secret = %s "  # noqa: S608
                           f"WHERE id = %s", [change(secret), change(previous), row_id])


def secrets_encrypt(apps, schema_editor) -> None:
    _rewrite(schema_editor, lambda value: (
        encrypt(value) if value == "" or value.startswith(IN_CLEAR) else value))


def secrets_decrypt(apps, schema_editor) -> None:
    _rewrite(schema_editor, lambda value: (
        value if value == "" or value.startswith(IN_CLEAR) else decrypt(value)))


class Migration(migrations.Migration):

    dependencies = [
        ('webhooks', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='webhookendpoint',
            name='previous_secret',
            field=reviewplatform.encryption.EncryptedTextField(blank=True),
        ),
        migrations.AlterField(
            model_name='webhookendpoint',
            name='secret',
            field=reviewplatform.encryption.EncryptedTextField(),
        ),
        migrations.RunPython(secrets_encrypt, secrets_decrypt),
    ]
