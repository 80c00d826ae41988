"""Intake over HTTP: the app server as `make demo` runs it, under 8 concurrent clients.

The servers are those of scripts/demo.py, with the same command lines
(reviewplatform.processes): gunicorn `reviewplatform.wsgi --workers 2 --preload`, a Celery
worker (`--queues default,inference --concurrency 1`), the webhooks worker and Celery beat,
on the demo's set-up (`demo_prepare`: the digits champion and challenger, the domain
thresholds, the API key), on a fresh test database. The servers run with
API_THROTTLE_RATE raised out of the way; everything else is the demo's default.

Windows of INTAKE_SECONDS (default 30) each, after a short warm-up:
- end to end: the policy published at full scope, the workers and beat running; clients submit the
  demo's held-out digits at a steady offered rate (INTAKE_E2E_RATE, default 120 cases/s, paced
  per client). The bench publishes that policy itself (`demo_prepare`): the full stage with no
  rule, confidence threshold 0 and audit rate 0, so that the model decides every case it
  answers within the domain checks; those checks (the demo's fitted brightness, contrast and
  size limits, and its confidence floor of 0.5) still send cases to reviewers. Every case's
  submit time is taken at the client, its decision time is `Decision.decided_at` read from the
  database once the window's cases have left `received`. `e2e_cases_per_s`: the model's
  decisions over the span from the first submit to the last decision; `e2e_p95_s`: p95 of
  submit to decision over those cases. Cases the policy hands to reviewers (out of domain, low
  confidence) have no decision to wait for: counted apart.
- intake: the worker and beat stopped, `POST /api/v1/cases/` with 100 KB JPEGs, closed loop
  (each client sends its next case when the last one is answered); `cases_per_s`, `p95_ms`.
  Taken in INTAKE_ROUNDS (default 4) windows of INTAKE_SECONDS / INTAKE_ROUNDS, each followed
  by a minimal window of the same length (below), the minimal site's server idling beside the
  platform's meanwhile: `ratio_vs_minimal` is the median of the rounds' ratios (each compares
  two windows taken one after the other, so a machine whose load drifts moves both), and
  `ratio_rounds` lists them.
- batches: the same clients posting 100-case multipart batches to `POST /api/v1/cases/batch/`.
- minimal: the same gunicorn command and clients against bench/minimal_site, the project's
  settings with one extra view that only saves the file and inserts the Case row.

Clients: 8 threads of this process, each with its own HTTP connection, sending request bodies
built by hand around pre-encoded images, so that they take as little of the 2 shared cores as a
client can: they compete with the servers for them, as they would on one machine. The JPEGs
are real (Pillow, a gradient with noise, 640x480, ~100 KB), four of them, made before timing.

Writes bench/results/intake.json. Targets: cases_per_s >= 150, p95_ms <= 150,
ratio_vs_minimal >= 0.5, batch_cases_per_s >= 300, e2e_cases_per_s >= 100, e2e_p95_s <= 2.
Needs PostgreSQL and Redis (`make bench` starts them). DEMO_EPOCHS sets both demo models' training
epochs, as for `make demo` (default: the demo's, 8 for the champion and 4 for the challenger;
fewer leave more cases below the domain checks' confidence floor, for reviewers).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.harness import ROOT, django_test_database, results_write
from reviewplatform.processes import platform_processes

SECONDS = float(os.environ.get("INTAKE_SECONDS", "30"))
# The single-submit and minimal windows are taken in turn, ROUNDS of each, SECONDS in all each.
ROUNDS = int(os.environ.get("INTAKE_ROUNDS", "4"))
WARM_UP_S = min(3.0, SECONDS / 5)
E2E_RATE = float(os.environ.get("INTAKE_E2E_RATE", "120"))
EPOCHS = os.environ.get("DEMO_EPOCHS", "")
CLIENTS = 8
BATCH = 100
JPEG_BYTES = 100 * 1024
CAPTURED_AT = "2026-05-01T12:00:00+02:00"
BIN = Path(sys.executable).parent
BOUNDARY = f"intake-{uuid.uuid4().hex}"
TARGETS = {  # figure: (comparison, target)
    "cases_per_s": (">=", 150), "p95_ms": ("<=", 150), "ratio_vs_minimal": (">=", 0.5),
    "batch_cases_per_s": (">=", 300), "e2e_cases_per_s": (">=", 100), "e2e_p95_s": ("<=", 2),
}


# --- request bodies -------------------------------------------------------------------------

def jpeg(seed: int) -> bytes:
    """A real 640x480 JPEG of about JPEG_BYTES: a colour gradient with Gaussian noise, its
    strength found by bisection."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:480, 0:640]
    base = np.stack([x * 255 / 640, y * 255 / 480, (x + y) * 255 / 1120], axis=-1)
    noise = rng.normal(0, 1, base.shape)
    low, high = 0.0, 64.0
    data = b""
    for _ in range(20):
        sigma = (low + high) / 2
        buffer = io.BytesIO()
        Image.fromarray(np.clip(base + sigma * noise, 0, 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=85)
        data = buffer.getvalue()
        if abs(len(data) - JPEG_BYTES) < JPEG_BYTES * 0.01:
            break
        low, high = (sigma, high) if len(data) < JPEG_BYTES else (low, sigma)
    return data


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> bytes:
    """A multipart/form-data body (boundary BOUNDARY); files are (file name, bytes)."""
    parts = []
    for name, value in fields.items():
        parts.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        kind = "image/jpeg" if filename.endswith(".jpg") else "image/png"
        parts += [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
                  f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode(), data, b"\r\n"]
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


def one_case(external_id: str, filename: str, image: bytes) -> bytes:
    return multipart({"deployment": "digits", "region": "north", "external_id": external_id,
                      "captured_at": CAPTURED_AT}, {"image": (filename, image)})


def batch_of_cases(prefix: str, images: list[bytes]) -> bytes:
    cases = [{"deployment": "digits", "region": "north", "external_id": f"{prefix}-{i}",
              "captured_at": CAPTURED_AT} for i in range(BATCH)]
    return multipart({"cases": json.dumps(cases)},
                     {f"image_{i}": (f"{i}.jpg", images[i % len(images)])
                      for i in range(BATCH)})


# --- clients --------------------------------------------------------------------------------

@dataclass
class Window:
    """What the clients saw in one window."""

    cases: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    submitted: list[tuple[int, float]] = field(default_factory=list)  # (case id, epoch sent)
    errors: list[str] = field(default_factory=list)

    @property
    def cases_per_s(self) -> float:
        return self.cases / self.seconds

    @property
    def p95_ms(self) -> float:
        return percentile(self.latencies_ms, 95)


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


# (client, request number) -> request body
Body = Callable[[int, int], bytes]
# response body -> (cases stored, case id or None)
Answer = Callable[[bytes], tuple[int, int | None]]


def clients_run(*, port: int, path: str, key: str, body: Body, answer: Answer,
                seconds: float, rate: float | None = None) -> Window:
    """CLIENTS threads post to `path` for `seconds`: each as soon as its last request was
    answered (closed loop), or at a steady `rate` shared between them (a request that falls
    due while its client still waits is sent as soon as it can)."""
    window = Window()
    lock = threading.Lock()
    start = time.perf_counter() + 0.05
    end = start + seconds
    finished: list[float] = []
    content_type = f"multipart/form-data; boundary={BOUNDARY}"

    def send(number: int, mine: Window) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        k = 0
        while True:
            if rate is None:
                time.sleep(max(0.0, start - time.perf_counter()))
            else:
                due = start + (k * CLIENTS + number) / rate
                if due >= end:
                    break
                time.sleep(max(0.0, due - time.perf_counter()))
            if time.perf_counter() >= end:
                break
            data = body(number, k)
            k += 1
            sent = time.time()
            began = time.perf_counter()
            try:
                connection.request("POST", path, data, {
                    "Authorization": f"Api-Key {key}", "Content-Type": content_type})
                response = connection.getresponse()
                content = response.read()
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                mine.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            mine.latencies_ms.append((time.perf_counter() - began) * 1000)
            if response.status not in (200, 201):
                mine.errors.append(f"{response.status}: {content[:300]!r}")
                continue
            try:
                stored, case_id = answer(content)
            except (ValueError, KeyError) as exc:
                mine.errors.append(f"{exc}: {content[:300]!r}")
                continue
            mine.cases += stored
            if case_id is not None:
                mine.submitted.append((case_id, sent))
        connection.close()

    def client(number: int) -> None:
        mine = Window()
        try:
            send(number, mine)
        except Exception as exc:
            mine.errors.append(f"client {number} stopped: {type(exc).__name__}: {exc}")
        with lock:
            finished.append(time.perf_counter())
            window.cases += mine.cases
            window.latencies_ms += mine.latencies_ms
            window.submitted += mine.submitted
            window.errors += mine.errors

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    window.seconds = max(finished) - start
    if window.errors:
        raise SystemExit(f"{len(window.errors)} requests failed on {path}; the first: "
                         f"{window.errors[0]}")
    return window


def stored_one(content: bytes) -> tuple[int, int | None]:
    return 1, None


def stored_one_with_id(content: bytes) -> tuple[int, int | None]:
    return 1, int(json.loads(content)["id"])


def stored_batch(content: bytes) -> tuple[int, int | None]:
    results = json.loads(content)["results"]
    refused = [r for r in results if r["status"] != 201]
    if refused:
        raise ValueError(f"{len(refused)} of a batch's cases refused; the first: {refused[0]}")
    return len(results), None


# --- servers --------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(work: Path, settings_module: str) -> dict[str, str]:
    """The environment of the demo's servers, on this run's test database and media folder."""
    from django.db import connection

    db = connection.settings_dict
    return {**os.environ, "DJANGO_SETTINGS_MODULE": settings_module,
            "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:"
                            f"{db['PORT']}/{db['NAME']}",
            "SECRET_KEY": "bench", "MEDIA_ROOT": str(work / "media"),
            "STATIC_ROOT": str(work / "static"), "API_THROTTLE_RATE": "1000000/min",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1"}


def processes(port: int, work: Path) -> dict[str, list[str]]:
    """The demo's processes (reviewplatform.processes), on this run's port and folder."""
    return platform_processes(bin_dir=BIN, bind=f"127.0.0.1:{port}",
                              beat_schedule=work / "celerybeat-schedule")


def web_command(port: int, work: Path) -> list[str]:
    return processes(port, work)["web"]


@contextlib.contextmanager
def running(commands: dict[str, list[str]], *, env: dict[str, str], logs: Path,
            port: int) -> Iterator[None]:
    """The commands started (each leading its own process group, as the demo starts them),
    the web server answering; on the way out each group is stopped."""
    children: list[subprocess.Popen[bytes]] = []
    try:
        for name, command in commands.items():
            with (logs / f"{name}.log").open("ab") as log:
                children.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=log,
                                                 stderr=subprocess.STDOUT,
                                                 start_new_session=True))
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5):
                    break
            except OSError:
                failed = [c.args[0] for c in children if c.poll() is not None]
                if failed or time.monotonic() > deadline:
                    raise SystemExit(f"the servers did not start ({failed or 'no answer'}); "
                                     f"see {logs}") from None
                time.sleep(0.3)
        yield
    finally:
        for child in reversed(children):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()


# --- the windows ----------------------------------------------------------------------------

def demo_prepare(work: Path) -> str:
    """The demo's set-up on the test database, then its policy widened to full scope with no
    confidence threshold and no audits (the model decides every in-domain case it answers);
    returns the API key."""
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from reviewplatform.demo import DEMO_DEPLOYMENT
    from reviewplatform.models import Deployment
    from rollout.models import Stage
    from rollout.services import policy_publish

    started = time.perf_counter()
    epochs = {"epochs": int(EPOCHS), "challenger_epochs": int(EPOCHS)} if EPOCHS else {}
    os.environ["DEMO_HISTORY"] = "0"  # intake is measured on the demo's set-up, not its history
    call_command("demo_prepare", model=work / "demo" / "digits.pkl",
                 challenger=work / "demo" / "digits-challenger.pkl",
                 api_key_file=work / "demo" / "api-key.txt", **epochs)
    policy_publish(deployment=Deployment.objects.get(slug=DEMO_DEPLOYMENT), stage=Stage.FULL,
                   rules=[], confidence_threshold=0.0, audit_rate=0.0,
                   actor=User.objects.get(username="admin"),
                   reason="intake benchmark: the demo model decides every in-domain case")
    print(f"demo set up in {time.perf_counter() - started:.0f} s", flush=True)
    return (work / "demo" / "api-key.txt").read_text().strip()


def cases_settled(ids: list[int], timeout: float) -> int:
    """Wait until none of the cases waits for its prediction; returns how many still do."""
    from reviewplatform.models import Case

    deadline = time.monotonic() + timeout
    waiting = Case.objects.filter(pk__in=ids, status=Case.Status.RECEIVED)
    while (left := waiting.count()) and time.monotonic() < deadline:
        time.sleep(0.5)
    return left


def end_to_end(port: int, key: str, digits: list[tuple[str, bytes]]) -> dict[str, Any]:
    from django.db.models import Count

    from reviewplatform.models import Decision, ReviewTask

    def body(label: str) -> Body:
        def make(client: int, k: int) -> bytes:
            name, data = digits[(k * CLIENTS + client) % len(digits)]
            return one_case(f"{label}-{client}-{k}", name, data)
        return make

    # Warm-up: the worker loads both models on its first job.
    warm = clients_run(port=port, path="/api/v1/cases/", key=key, body=body("e2e-warm"),
                       answer=stored_one_with_id, seconds=WARM_UP_S, rate=E2E_RATE / 4)
    cases_settled([case_id for case_id, _ in warm.submitted], 300)
    window = clients_run(port=port, path="/api/v1/cases/", key=key, body=body("e2e"),
                         answer=stored_one_with_id, seconds=SECONDS, rate=E2E_RATE)
    ids = [case_id for case_id, _ in window.submitted]
    unsettled = cases_settled(ids, 120)
    decided = {case_id: at.timestamp() for case_id, at in Decision.objects.filter(
        case_id__in=ids, source=Decision.Source.MODEL).values_list("case_id", "decided_at")}
    latencies = [decided[case_id] - sent for case_id, sent in window.submitted
                 if case_id in decided]
    if not decided:
        raise SystemExit("the model decided none of the cases: see the worker's log")
    span = max(decided.values()) - min(sent for _, sent in window.submitted)
    handed_over = dict(ReviewTask.objects.filter(case_id__in=set(ids) - set(decided))
                       .values_list("reason").annotate(n=Count("case_id", distinct=True))
                       .order_by("reason"))
    figures = {
        "e2e_cases_per_s": round(len(decided) / span, 1),
        "e2e_p95_s": round(percentile(latencies, 95), 3),
        "e2e_p50_s": round(statistics.median(latencies), 3),
        "e2e_offered_cases_per_s": round(window.cases_per_s, 1),
        "e2e_submit_p95_ms": round(window.p95_ms, 1),
        "e2e_cases": len(ids),
        "e2e_decided_by_model": len(decided),
        "e2e_to_reviewers": len(ids) - len(decided) - unsettled,
        "e2e_to_reviewers_by_reason": handed_over,
        "e2e_unsettled_after_120_s": unsettled,
    }
    print(f"end to end: {len(ids)} cases offered at {window.cases_per_s:.1f}/s, "
          f"{len(decided)} decided by the model at {figures['e2e_cases_per_s']}/s, "
          f"submit to decision p50 {figures['e2e_p50_s']} s, p95 {figures['e2e_p95_s']} s; "
          f"{figures['e2e_to_reviewers']} to reviewers {handed_over}, {unsettled} unsettled",
          flush=True)
    return figures


def closed_loop(name: str, *, port: int, path: str, key: str, body: Body,
                answer: Answer, seconds: float = SECONDS) -> Window:
    """A warm-up, then the window."""
    clients_run(port=port, path=path, key=key, body=lambda c, k: body(c, -1 - k),
                answer=answer, seconds=WARM_UP_S)
    window = clients_run(port=port, path=path, key=key, body=body, answer=answer,
                         seconds=seconds)
    print(f"{name}: {window.cases} cases in {window.seconds:.1f} s, "
          f"{window.cases_per_s:.1f} cases/s; request p50 "
          f"{statistics.median(window.latencies_ms):.0f} ms, p95 {window.p95_ms:.0f} ms",
          flush=True)
    return window


def measure(work: Path) -> dict[str, Any]:
    with django_test_database():
        from celery import current_app

        key = demo_prepare(work)
        digits = [(path.name, path.read_bytes())
                  for path in sorted((work / "demo" / "digits" / "test").glob("*/*.png"))]
        jpegs = [jpeg(seed) for seed in range(4)]
        print(f"{len(jpegs)} JPEGs of {min(map(len, jpegs)):,} to {max(map(len, jpegs)):,} "
              f"bytes; {len(digits)} digits", flush=True)
        logs = work / "log"
        logs.mkdir()
        current_app.control.purge()
        figures: dict[str, Any] = {}

        port = free_port()
        env = server_env(work, "reviewplatform.settings.base")
        with running(processes(port, work), env=env, logs=logs, port=port):
            e2e = end_to_end(port, key, digits)

        # The platform and the minimal site up side by side (the one not measured idles), their
        # windows taken in turn, so that each ratio compares two windows next to each other.
        port, minimal_port = free_port(), free_port()
        with running({"web": web_command(port, work)}, env=env, logs=logs, port=port), \
                running({"minimal": web_command(minimal_port, work)}, logs=logs,
                        port=minimal_port, env=server_env(work, "bench.minimal_site.settings")):
            singles, minimals = [], []
            for r in range(ROUNDS):
                singles.append(closed_loop(
                    f"intake, round {r + 1}", port=port, path="/api/v1/cases/", key=key,
                    answer=stored_one, seconds=SECONDS / ROUNDS,
                    body=lambda c, k, r=r: one_case(f"api-{r}-{c}-{k}", f"{k}.jpg",
                                                    jpegs[k % len(jpegs)])))
                minimals.append(closed_loop(
                    f"minimal, round {r + 1}", port=minimal_port, path="/bench/minimal/cases/",
                    key=key, answer=stored_one, seconds=SECONDS / ROUNDS,
                    body=lambda c, k, r=r: one_case(f"min-{r}-{c}-{k}", f"{k}.jpg",
                                                    jpegs[k % len(jpegs)])))
            batch = closed_loop(
                "batches", port=port, path="/api/v1/cases/batch/", key=key,
                answer=stored_batch, body=lambda c, k: batch_of_cases(f"batch-{c}-{k}", jpegs))
        single, minimal = windows_joined(singles), windows_joined(minimals)
        ratios = [a.cases_per_s / b.cases_per_s for a, b in zip(singles, minimals, strict=True)]
        print("ratio per round: " + ", ".join(f"{ratio:.3f}" for ratio in ratios), flush=True)

        figures["cases_per_s"] = round(single.cases_per_s, 1)
        figures["p95_ms"] = round(single.p95_ms, 1)
        figures["minimal_cases_per_s"] = round(minimal.cases_per_s, 1)
        figures["ratio_vs_minimal"] = round(statistics.median(ratios), 3)
        figures["ratio_rounds"] = [round(ratio, 3) for ratio in ratios]
        figures["batch_cases_per_s"] = round(batch.cases_per_s, 1)
        figures.update(e2e)
        figures["p50_ms"] = round(statistics.median(single.latencies_ms), 1)
        figures["minimal_p95_ms"] = round(minimal.p95_ms, 1)
        figures["batch_p95_ms"] = round(batch.p95_ms, 1)
        figures["window_s"] = SECONDS
        figures["rounds"] = ROUNDS
        return figures


def windows_joined(windows: list[Window]) -> Window:
    """Several windows of the same load read as one: their cases over their summed time."""
    joined = Window()
    for window in windows:
        joined.cases += window.cases
        joined.latencies_ms += window.latencies_ms
        joined.seconds += window.seconds
    return joined


def main() -> int:
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-intake-"))
    os.environ["MEDIA_ROOT"] = str(work / "media")
    os.environ["STATIC_ROOT"] = str(work / "static")
    try:
        figures = measure(work)
    except BaseException:
        print(f"the servers' logs are kept in {work / 'log'}", file=sys.stderr)
        raise
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'figure':<20} {'value':>9}  {'target':<8} met")
    missed = []
    for name, (comparison, target) in TARGETS.items():
        value = figures[name]
        met = value >= target if comparison == ">=" else value <= target
        if not met:
            missed.append(name)
        print(f"{name:<20} {value:>9}  {comparison} {target:<5} {'yes' if met else 'NO'}")
    figures["targets"] = "; ".join(f"{name} {comparison} {target}"
                                   for name, (comparison, target) in TARGETS.items())
    results_write("intake", figures)
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    print(f"benchmark took {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
