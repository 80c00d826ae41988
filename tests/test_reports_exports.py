"""The retraining export: a zip that fastai loads as it is, and trains on."""

from __future__ import annotations

import io
import shutil
import zipfile
from datetime import datetime
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from fastai.vision.all import (
    CrossEntropyLossFlat,
    ImageDataLoaders,
    Learner,
    Resize,
    accuracy,
)
from torch import nn

from rollout.models import Adjudication
from tests.reports_factory import decide, sim_model

DAY = datetime(2026, 5, 1, 10, 0, tzinfo=ZoneInfo("Europe/Oslo"))


@pytest.fixture
def labelled(settings, tmp_path, deployment, client_user, reviewer, digit_files):
    """Thirty cases with real digit images: human decisions, one model decision with an audit,
    one model decision nobody checked (not exported), one 'cannot tell' (not exported)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    (settings.MEDIA_ROOT / "cases").mkdir(parents=True)
    model = sim_model(deployment)
    cases = []
    for i in range(30):
        label = ["1", "4", "7"][i % 3]
        source = digit_files[label][i // 3]
        name = f"cases/d{i}{source.suffix}"
        shutil.copy(source, settings.MEDIA_ROOT / name)
        kind = {0: "audit", 1: "unchecked", 2: "unsure"}.get(i, "human")
        cases.append(decide(
            deployment, model, submitted_by=client_user, reviewer=reviewer, captured_at=DAY,
            model_label=label, image=name,
            human=None if kind in ("audit", "unchecked") else
            ("cannot_tell" if kind == "unsure" else label),
            source="model" if kind in ("audit", "unchecked") else "human",
            audit=label if kind == "audit" else None))
    return cases


def download(client, url: str) -> zipfile.ZipFile:
    response = client.get(url)
    assert response.status_code == 200
    assert response.streaming
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_it_exports_one_folder_per_label_and_a_labels_csv(client, admin_user, labelled,
                                                          senior_adjudication):
    client.force_login(admin_user)

    archive = download(client, "/deployments/digits/report/retraining.zip")

    names = archive.namelist()
    labels = pd.read_csv(archive.open("labels.csv"))
    assert list(labels.columns) == ["fname", "label", "is_valid"]
    assert len(labels) == 28  # neither the unchecked model decision nor "cannot tell"
    assert sorted(n for n in names if n != "labels.csv") == sorted(labels.fname)
    assert all(f.split("/")[0] == str(lab) for f, lab in zip(labels.fname, labels.label,
                                                              strict=True))
    # The adjudicated label wins over the decision, which itself stays as it was.
    adjudicated = labels[labels.fname.str.startswith(f"4/{labelled[3].pk}.")]
    assert len(adjudicated) == 1


@pytest.fixture
def senior_adjudication(labelled, admin_user):
    return Adjudication.objects.create(case=labelled[3], label="4", decision_label="1",
                                       actor=admin_user, reason="a four")


def test_fastai_loads_the_export_and_trains_on_it(client, admin_user, labelled, tmp_path):
    client.force_login(admin_user)
    root = tmp_path / "export"
    download(client, "/deployments/digits/report/retraining.zip").extractall(root)
    labels = pd.read_csv(root / "labels.csv")
    assert labels.is_valid.any() and not labels.is_valid.all()

    from_csv = ImageDataLoaders.from_csv(root, csv_fname="labels.csv", fn_col=0, label_col=1,
                                         valid_col=2, item_tfms=Resize(16), bs=4, num_workers=0)
    from_folder = ImageDataLoaders.from_folder(root, valid_pct=0.25, seed=0,
                                               item_tfms=Resize(16), bs=4, num_workers=0)

    for dls in (from_csv, from_folder):
        assert sorted(map(str, dls.vocab)) == ["1", "4", "7"]
        net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, len(dls.vocab)))
        learn = Learner(dls, net, loss_func=CrossEntropyLossFlat(), metrics=accuracy)
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
        assert learn.recorder.values  # one epoch ran, with a validation loss
