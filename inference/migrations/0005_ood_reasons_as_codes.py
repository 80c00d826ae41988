"""Out-of-domain reasons stored as {"code", "text"} objects instead of sentences.

Each stored sentence is mapped by the words it starts with (what inference/ood.py wrote before
the codes); a sentence that starts otherwise keeps its words under the code "other". Reasons
that are objects already are left as they are, so running it twice changes nothing.
"""

from django.db import migrations, models

PREFIXES = (
    ("dark image", "too_dark"),
    ("overexposed image", "too_bright"),
    ("low contrast", "low_contrast"),
    ("low resolution", "low_resolution"),
    ("uncertain model", "uncertain"),
    ("spread-out prediction", "spread_out"),
)
BATCH = 1000


def _coded(reason):
    if isinstance(reason, dict):
        return reason
    text = str(reason)
    code = next((code for words, code in PREFIXES if text.startswith(words)), "other")
    return {"code": code, "text": text}


def _worded(reason):
    return reason.get("text", "") if isinstance(reason, dict) else reason


def _rewrite(apps, convert):
    Prediction = apps.get_model("inference", "Prediction")
    changed = []
    rows = Prediction.objects.exclude(ood_reasons=[]).only("id", "ood_reasons").order_by("id")
    for prediction in rows.iterator(chunk_size=BATCH):
        reasons = prediction.ood_reasons
        if not isinstance(reasons, list):
            continue
        converted = [convert(reason) for reason in reasons]
        if converted != reasons:
            prediction.ood_reasons = converted
            changed.append(prediction)
        if len(changed) >= BATCH:
            Prediction.objects.bulk_update(changed, ["ood_reasons"])
            changed = []
    if changed:
        Prediction.objects.bulk_update(changed, ["ood_reasons"])


def forwards(apps, schema_editor):
    _rewrite(apps, _coded)


def backwards(apps, schema_editor):
    _rewrite(apps, _worded)


class Migration(migrations.Migration):

    dependencies = [
        ('inference', '0004_batching_and_audit'),
    ]

    operations = [
        migrations.AlterField(
            model_name='prediction',
            name='ood_reasons',
            field=models.JSONField(blank=True, default=list, help_text='why the input looks out of domain: [{"code": OodReason, "text": words}]'),
        ),
        migrations.RunPython(forwards, backwards),
    ]
