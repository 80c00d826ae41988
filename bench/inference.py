"""Inference: the platform's worker against what a naive service does and against the ceiling.

Two models, fed the same image files (the demo's held-out digits, cycled as often as needed):
- small: the demo model (digits, 32 px): per-item overhead dominates;
- large: a fastai resnet18 learner at 224 px (random weights): compute dominates.
For each: (a) raw torch forward in batches of 32 on preprocessed tensors (the ceiling);
(b) per-item `learn.predict` (small only); (c) the platform end to end: cases already
submitted, one Celery worker process (warmed up on one case), timed from the moment the
submitting transaction commits (before the first job is queued) until every prediction is
stored.

Every figure is timed over a window of several seconds: (a) and (b) go round the files until
WINDOW_S has passed; (c) predicts SMALL_CASES or LARGE_CASES cases, sized to take longer than
that on a 2-core machine (the window each figure got is written out too). The whole set is
measured RUNS times; each run has its own fresh worker, so each ratio is taken within one run,
against that run's own baseline, and the worker's peak RSS (its main and pool processes added
up) is per run. Writes bench/results/inference.json: for every figure and ratio the median of
the runs, their min and max, and each run's value.

Targets: small c/b >= 4, large c/a >= 0.85 (stretch: > 1, from channels-last convolutions),
worker peak RSS <= 1.5 GB. Needs PostgreSQL and Redis (`make bench` starts them).
BENCH_SCALE (default 1) scales the windows and case counts, e.g. 0.1 to try the script quickly.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness import ROOT, django_test_database, results_write

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
RUNS = 3
WINDOW_S = 4.0 * SCALE
# On 2 idle cores: about 6 s of the worker's time each, at ~350 and ~25 images/s.
SMALL_CASES = round(2048 * SCALE)
LARGE_CASES = round(128 * SCALE)
BATCH = 32
TARGETS = ("small_ratio_vs_predict >= 4; large_ratio_vs_raw >= 0.85 (stretch: > 1); "
           "worker_peak_rss_mb <= 1536")


def spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    """The median of the runs, their min and max, and each run's value in run order."""
    return {"median": round(statistics.median(values), digits),
            "min": round(min(values), digits), "max": round(max(values), digits),
            "runs": [round(value, digits) for value in values]}


def timed(step: Callable[[], int], window_s: float) -> tuple[float, float]:
    """Call `step` (which returns how many items it did) until `window_s` seconds have passed;
    returns items per second and the window's actual length."""
    items = 0
    started = time.perf_counter()
    elapsed = 0.0
    while elapsed < window_s:
        items += step()
        elapsed = time.perf_counter() - started
    return items / elapsed, elapsed


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


def _images(root: Path, sources: list[Path], size: int) -> list[Path]:
    """The source images as RGB PNG files of size x size, under root/<size>px/<label>/."""
    files = []
    for i, source in enumerate(sources):
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


def _fastai_load(model_path: Path) -> Any:
    """The learner exactly as fastai loads it (the baselines use none of the platform's code)."""
    import warnings

    from fastai.learner import load_learner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_learner(model_path, cpu=True)


def raw_forward(learn: Any, files: list[Path]) -> tuple[float, float]:
    """Images per second of the bare model on preprocessed tensors, batches of 32."""
    import torch

    learn.model.eval()
    batches = itertools.cycle([xb for (xb,) in learn.dls.test_dl(files, bs=BATCH,
                                                                  num_workers=0)])

    def step() -> int:
        xb = next(batches)
        learn.model(xb)
        return len(xb)

    with torch.inference_mode():
        step()  # warm-up
        return timed(step, WINDOW_S)


def per_item_predict(learn: Any, files: list[Path]) -> tuple[float, float]:
    """Images per second of `learn.predict`, one file at a time."""
    paths = itertools.cycle(files)

    def step() -> int:
        learn.predict(next(paths))
        return 1

    with learn.no_bar():
        step()  # warm-up
        return timed(step, WINDOW_S)


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "reviewplatform.settings.test",
           "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:"
                           f"{db['PORT']}/{db['NAME']}",
           "MEDIA_ROOT": str(os.environ["MEDIA_ROOT"])}
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "celery"), "-A", "reviewplatform", "worker",
         "-Q", "default,inference", "-c", "1", "--without-mingle", "--without-gossip",
         "-l", "WARNING", "-n", "bench@%h"],
        cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    worker.terminate()
    try:
        worker.wait(timeout=60)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()


def platform(slug: str, model_path: Path, files: list[Path], count: int,
             user: object) -> tuple[float, float]:
    """Images per second of the running worker: `count` cases submitted in one transaction,
    timed from its commit until every one has a stored prediction."""
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import transaction

    from inference.models import Prediction
    from inference.services import model_version_register
    from reviewplatform.intake import case_intake
    from reviewplatform.models import Deployment

    deployment = Deployment.objects.get(slug=slug)
    model_version_register(deployment=deployment, path=model_path, name="bench", champion=True)
    images = {path: path.read_bytes() for path in files}

    def submit(i: int, path: Path) -> None:
        case_intake(deployment=deployment, region_code="north",
                    image=SimpleUploadedFile(path.name, images[path], "image/png"),
                    captured_at=datetime(2026, 5, 1, 12, tzinfo=UTC),
                    external_id=f"{slug}-{i}", submitted_by=user)  # type: ignore[arg-type]

    def wait_for(expected: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        stored = Prediction.objects.filter(case__deployment=deployment)
        while stored.count() < expected:
            if time.monotonic() > deadline:
                raise SystemExit(f"{slug}: only {stored.count()} of {expected} predictions "
                                 f"stored after {timeout:.0f} s")
            time.sleep(0.05)

    submit(-1, files[0])  # warm-up: the worker loads the learner
    wait_for(1, 300)
    moments: list[float] = []
    with transaction.atomic():  # every job is queued at once, on commit
        # Registered first, so the clock starts before the first job is queued.
        transaction.on_commit(lambda: moments.append(time.perf_counter()))
        for i in range(count):
            submit(i, files[i % len(files)])
        transaction.on_commit(lambda: moments.append(time.perf_counter()))
    print(f"  {slug}: {count} jobs queued in {moments[1] - moments[0]:.2f} s", flush=True)
    wait_for(count + 1, 900)
    elapsed = time.perf_counter() - moments[0]
    return count / elapsed, elapsed


def one_run(run: int, small: dict[str, Any], large: dict[str, Any], user: object,
            log: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Every figure once, the baselines first, then a fresh worker: (figures, windows)."""
    from celery import current_app

    from inference.demo_model import DIGIT_LABELS
    from rollout.services import deployment_create

    figures: dict[str, float] = {}
    windows: dict[str, float] = {}

    def record(name: str, measured: tuple[float, float]) -> None:
        figures[name], windows[name] = measured
        print(f"  {name}: {figures[name]:.1f} img/s over {windows[name]:.1f} s", flush=True)

    print(f"run {run}", flush=True)
    record("small_raw_img_s", raw_forward(small["learn"], small["files"]))
    record("small_predict_img_s", per_item_predict(small["learn"], small["files"]))
    record("large_raw_img_s", raw_forward(large["learn"], large["files"]))

    for model in ("small", "large"):
        deployment_create(slug=f"{model}-{run}", name=f"{model} {run}", labels=DIGIT_LABELS,
                          actor=None, regions=[("north", "North", "Europe/Oslo")])
    current_app.control.purge()
    worker = start_worker(log)
    try:
        record("small_platform_img_s", platform(f"small-{run}", small["path"], small["files"],
                                                SMALL_CASES, user))
        record("large_platform_img_s", platform(f"large-{run}", large["path"], large["files"],
                                                LARGE_CASES, user))
        figures["worker_peak_rss_mb"] = _rss_peak_mb(worker.pid)
    finally:
        stop_worker(worker)
    figures["small_ratio_vs_predict"] = (figures["small_platform_img_s"]
                                         / figures["small_predict_img_s"])
    figures["large_ratio_vs_raw"] = figures["large_platform_img_s"] / figures["large_raw_img_s"]
    print(f"  worker_peak_rss_mb: {figures['worker_peak_rss_mb']:.0f}; small ratio "
          f"{figures['small_ratio_vs_predict']:.2f}, large ratio "
          f"{figures['large_ratio_vs_raw']:.2f}", flush=True)
    return figures, windows


# The ratios first, each followed by its two figures from the same runs (the platform, then
# the baseline); the remaining ceiling and the memory after them.
ORDER = ["small_ratio_vs_predict", "small_platform_img_s", "small_predict_img_s",
         "large_ratio_vs_raw", "large_platform_img_s", "large_raw_img_s",
         "small_raw_img_s", "worker_peak_rss_mb"]


def measure(work: Path) -> list[tuple[dict[str, float], dict[str, float]]]:
    """The models and their image files, then RUNS runs on a fresh test database."""
    with django_test_database():
        from django.contrib.auth.models import User

        from inference.demo_model import demo_model_train

        logging.disable(logging.INFO)  # not a line per submitted case
        trained = demo_model_train(data_dir=work / "digits", out=work / "small.pkl", epochs=3)
        small_files = _images(work / "images", trained.test_files, 32)
        large_files = _images(work / "images", trained.test_files, 224)
        large_path = _large_learner(large_files, work / "large.pkl")
        small = {"path": trained.path, "files": small_files, "learn": _fastai_load(trained.path)}
        large = {"path": large_path, "files": large_files, "learn": _fastai_load(large_path)}
        user = User.objects.create_user("bench-client")
        return [one_run(run, small, large, user, work / "worker.log")
                for run in range(1, RUNS + 1)]


def main() -> None:
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    try:
        runs = measure(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    shortest = {name: round(min(windows[name] for _, windows in runs), 2)
                for name in runs[0][1]}
    results_write("inference", {
        **{name: spread([figures[name] for figures, _ in runs]) for name in ORDER},
        "runs": RUNS,
        "shortest_window_s": shortest,
        "platform_cases": {"small": SMALL_CASES, "large": LARGE_CASES},
        "targets": TARGETS,
    })
    short = [name for name, seconds in shortest.items() if seconds < WINDOW_S]
    if short:
        print(f"windows shorter than {WINDOW_S:.1f} s: {', '.join(short)} (raise the case "
              "counts)", file=sys.stderr)
    print(f"benchmark took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
