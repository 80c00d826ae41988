"""Data migrations of the inference app, run on rows as they were stored before."""

from __future__ import annotations

import importlib

from django.apps import apps

from inference.models import Prediction
from tests.test_queue_support import *  # noqa: F403 - the queue fixtures

coded = importlib.import_module("inference.migrations.0005_ood_reasons_as_codes")


def stored(make_case, stored_champion, reasons) -> Prediction:
    return Prediction.objects.create(case=make_case(), model_version=stored_champion,
                                     status="ok", label="4", confidence=0.3,
                                     out_of_domain=bool(reasons), ood_reasons=reasons)


def test_it_turns_stored_sentences_into_coded_reasons(make_case, stored_champion):
    flagged = stored(make_case, stored_champion, [
        "dark image (mean brightness 12 < 40)",
        "overexposed image (mean brightness 250 > 240)",
        "low contrast (5 < 20)",
        "low resolution (14x14 = 196 px < 512 px)",
        "uncertain model (top probability 0.41 < 0.50)",
        "spread-out prediction (entropy 1.80 > 1.00 nats)",
        "blurred frame (a note from elsewhere)",
    ])
    fine = stored(make_case, stored_champion, [])

    coded.forwards(apps, None)

    flagged.refresh_from_db()
    assert [(r["code"], r["text"]) for r in flagged.ood_reasons] == [
        ("too_dark", "dark image (mean brightness 12 < 40)"),
        ("too_bright", "overexposed image (mean brightness 250 > 240)"),
        ("low_contrast", "low contrast (5 < 20)"),
        ("low_resolution", "low resolution (14x14 = 196 px < 512 px)"),
        ("uncertain", "uncertain model (top probability 0.41 < 0.50)"),
        ("spread_out", "spread-out prediction (entropy 1.80 > 1.00 nats)"),
        ("other", "blurred frame (a note from elsewhere)"),
    ]
    fine.refresh_from_db()
    assert fine.ood_reasons == []


def test_it_converts_once_and_back(make_case, stored_champion):
    sentences = ["dark image (mean brightness 12 < 40)", "odd (1)"]
    prediction = stored(make_case, stored_champion, sentences)

    coded.forwards(apps, None)
    prediction.refresh_from_db()
    once = prediction.ood_reasons
    coded.forwards(apps, None)
    prediction.refresh_from_db()

    assert prediction.ood_reasons == once
    coded.backwards(apps, None)
    prediction.refresh_from_db()
    assert prediction.ood_reasons == sentences
