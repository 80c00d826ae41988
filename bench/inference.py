"""Inference: the platform's worker against what a naive service does and against the ceiling.

Two models, the same 256 image files for each:
- small: the demo model (digits, 32 px): per-item overhead dominates;
- large: a fastai resnet18 learner at 224 px (random weights): compute dominates.
For each: (a) raw torch forward in batches of 32 on preprocessed tensors (the ceiling);
(b) per-item `learn.predict` (small only); (c) the platform end to end: the cases already
submitted, one Celery worker process (warmed up on one case), timed from the moment the jobs are
queued until every prediction is stored. Targets: small c/b >= 4, large c/a >= 0.85 (stretch:
> 1, from channels-last convolutions), worker peak RSS <= 1.5 GB (the worker's main and pool
processes added up). Writes bench/results/inference.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness import ROOT, django_test_database, results_write

N = 256
BATCH = 32


def _rss_peak_mb(pid: int) -> float:
    """Peak resident memory of a process and its children (VmHWM), in MB."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    pids.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _images(root: Path, test_files: list[Path], size: int) -> list[Path]:
    files = []
    for i, source in enumerate(test_files[:N] * (N // len(test_files[:N]) + 1)):
        if len(files) == N:
            break
        path = root / f"{size}px" / source.parent.name / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(source).convert("RGB").resize((size, size)).save(path)
        files.append(path)
    return files


def _large_learner(files: list[Path], out: Path) -> Path:
    from fastai.vision.all import ImageDataLoaders, Resize, resnet18, vision_learner

    dls = ImageDataLoaders.from_folder(files[0].parent.parent, valid_pct=0.2, seed=0,
                                       item_tfms=Resize(224), bs=BATCH, num_workers=0)
    learn = vision_learner(dls, resnet18, pretrained=False)
    learn.export(out)
    return out


def _fastai_load(model_path: Path) -> object:
    """The learner exactly as fastai loads it (the baselines use none of the platform's code)."""
    import warnings

    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_learner(model_path, cpu=True)


def raw_forward(model_path: Path, files: list[Path]) -> float:
    """Images per second of the bare model on preprocessed tensors, batches of 32."""
    import torch

    learn: Any = _fastai_load(model_path)
    learn.model.eval()
    batches = [xb for (xb,) in learn.dls.test_dl(files, bs=BATCH, num_workers=0)]
    with torch.inference_mode():
        learn.model(batches[0])  # warm-up
        started = time.perf_counter()
        for xb in batches:
            learn.model(xb)
    return len(files) / (time.perf_counter() - started)


def per_item_predict(model_path: Path, files: list[Path]) -> float:
    learn: Any = _fastai_load(model_path)
    learn.predict(files[0])
    started = time.perf_counter()
    with learn.no_bar():
        for path in files:
            learn.predict(path)
    return len(files) / (time.perf_counter() - started)


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reviewplatform.settings.test",
           "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:"
                           f"{db['PORT']}/{db['NAME']}",
           "MEDIA_ROOT": str(os.environ["MEDIA_ROOT"])}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "reviewplatform", "worker",
         "-Q", "default,inference", "-c", "1", "--without-mingle", "--without-gossip",
         "-l", "WARNING", "-n", "bench@%h"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return process


def platform(deployment_slug: str, model_path: Path, files: list[Path], user: object) -> float:
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import transaction

    from inference.models import Prediction
    from inference.services import model_version_register
    from reviewplatform.models import Deployment
    from reviewplatform.services import case_submit

    deployment = Deployment.objects.get(slug=deployment_slug)
    model_version_register(deployment=deployment, path=model_path, name="bench", champion=True)

    def submit(i: int, path: Path) -> None:
        case_submit(deployment=deployment, region_code="north",
                    image=SimpleUploadedFile(path.name, path.read_bytes(), "image/png"),
                    captured_at=datetime(2026, 5, 1, 12, tzinfo=UTC),
                    external_id=f"{deployment_slug}-{i}", submitted_by=user)  # type: ignore[arg-type]

    def wait_for(count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while Prediction.objects.filter(case__deployment=deployment).count() < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {Prediction.objects.count()} predictions stored")
            time.sleep(0.05)

    submit(-1, files[0])  # warm-up: the worker loads the learner
    wait_for(1, 120)
    with transaction.atomic():  # every job is queued at once, on commit
        for i, path in enumerate(files):
            submit(i, path)
        started_at: list[float] = []
        transaction.on_commit(lambda: started_at.append(time.perf_counter()))
    wait_for(len(files) + 1, 600)
    return len(files) / (time.perf_counter() - started_at[0])


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    with django_test_database():
        from celery import current_app
        from django.contrib.auth.models import User

        from inference.demo_model import DIGIT_LABELS, demo_model_train
        from rollout.services import deployment_create

        small = demo_model_train(data_dir=work / "digits", out=work / "small.pkl", epochs=3)
        small_files = _images(work / "images", small.test_files, 32)
        large_files = _images(work / "images", small.test_files, 224)
        large_path = _large_learner(large_files, work / "large.pkl")

        figures: dict[str, float] = {}
        figures["small_raw_img_s"] = raw_forward(small.path, small_files)
        figures["small_predict_img_s"] = per_item_predict(small.path, small_files)
        figures["large_raw_img_s"] = raw_forward(large_path, large_files)

        user = User.objects.create_user("bench-client")
        for slug in ("small", "large"):
            deployment_create(slug=slug, name=slug, labels=DIGIT_LABELS, actor=None,
                              regions=[("north", "North", "Europe/Oslo")])
        current_app.control.purge()
        worker = start_worker(work / "worker.log")
        try:
            figures["small_platform_img_s"] = platform("small", small.path, small_files, user)
            figures["large_platform_img_s"] = platform("large", large_path, large_files, user)
            figures["worker_peak_rss_mb"] = _rss_peak_mb(worker.pid)
        finally:
            worker.terminate()
            worker.wait(timeout=60)
        figures["small_ratio_vs_predict"] = (figures["small_platform_img_s"]
                                             / figures["small_predict_img_s"])
        figures["large_ratio_vs_raw"] = (figures["large_platform_img_s"]
                                         / figures["large_raw_img_s"])
    results_write("inference", {key: round(value, 3) for key, value in figures.items()} | {
        "targets": "small_ratio_vs_predict >= 4; large_ratio_vs_raw >= 0.85; "
                   "worker_peak_rss_mb <= 1536"})


if __name__ == "__main__":
    main()
