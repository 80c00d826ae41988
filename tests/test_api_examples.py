"""The example client and receiver of docs/api.md run as a client would run them: the folder
submitted twice makes each case once, and the receiver prints each decision once and refuses a
forged request."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from reviewplatform import lifecycle
from reviewplatform.lifecycle import CaseRoute
from reviewplatform.models import Case
from rollout.selectors import policy_current
from tests.conftest import png_bytes
from webhooks.delivery import drain
from webhooks.models import WebhookDelivery
from webhooks.services import delivery_redeliver, endpoint_create

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"


@pytest.mark.parametrize("name", ["submit_folder.py", "webhook_receiver.py"])
def test_the_guide_shows_each_example_as_it_is(name):
    assert (EXAMPLES / name).read_text() in (ROOT / "docs" / "api.md").read_text()


def run_submit(folder: Path, url: str, key: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "submit_folder.py"), str(folder)], check=True,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "REVIEW_URL": url, "REVIEW_API_KEY": key})
    return done.stdout.splitlines()


def test_the_example_client_submits_a_folder_once_however_often_it_runs(
        live_server, deployment, api_key, tmp_path, settings):
    settings.MEDIA_ROOT = tmp_path / "media"
    folder = tmp_path / "camera-7"
    folder.mkdir()
    for n, colour in enumerate(["white", "black", "gray"]):
        (folder / f"{n}.png").write_bytes(png_bytes((40, 30), colour))
    (folder / "notes.txt").write_text("not an image")
    (folder / "3.png").write_bytes(b"not a png either")

    first = run_submit(folder, live_server.url, api_key)
    again = run_submit(folder, live_server.url, api_key)

    cases = {case.external_id: case.pk for case in Case.objects.all()}
    assert sorted(cases) == ["camera-7/0.png", "camera-7/1.png", "camera-7/2.png"]
    assert first[:3] == [f"{n}.png: case {cases[f'camera-7/{n}.png']}, received"
                         for n in range(3)]
    assert first[3].startswith("3.png: refused (invalid): ")
    assert again[:3] == [f"{line} (already submitted)" for line in first[:3]]
    assert again[3] == first[3]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def example_receiver(tmp_path):
    """The example receiver, as a process: (its URL, a function starting it with a secret,
    its output so far)."""
    port = free_port()
    log = tmp_path / "receiver.log"
    processes = []

    def start(secret: str) -> None:
        processes.append(subprocess.Popen(
            [sys.executable, str(EXAMPLES / "webhook_receiver.py")],
            env={**os.environ, "WEBHOOK_SECRET": secret, "RECEIVER_PORT": str(port)},
            stdout=log.open("w"), stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while socket.socket().connect_ex(("127.0.0.1", port)) != 0:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    yield f"http://127.0.0.1:{port}/", start, lambda: log.read_text().splitlines()
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def test_the_example_receiver_acts_once_per_verified_event(example_receiver, deployment,
                                                          client_user):
    url, start, output = example_receiver
    endpoint = endpoint_create(owner=client_user, url=url, event_types=["case.decided"])
    start(endpoint.secret)
    policy = policy_current(deployment_id=deployment.pk)
    case = Case.objects.create(
        deployment=deployment, region=deployment.regions.get(code="north"),
        external_id="camera-7/0001", image="cases/x.png", image_sha256="0" * 64, width=8,
        height=8, captured_at="2026-05-01T19:30:00Z", submitted_by=client_user)
    lifecycle.cases_route(case_ids=[case.pk], router=lambda cases: [CaseRoute(
        case_id=case.pk, policy_version_id=policy.pk, review_reason=None, model_label="7")])

    drain()
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code) == ("succeeded", 204)
    delivery_redeliver(delivery, now=delivery.finished_at)
    drain()  # the same event again: accepted, not acted on twice
    forged = requests.post(url, data=delivery.body, timeout=10, headers={
        "webhook-id": str(delivery.event_uid), "webhook-timestamp": str(int(time.time())),
        "webhook-signature": "v1,bm90IHRoZSBzaWduYXR1cmU="})

    assert forged.status_code == 400
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 2)
    (line,) = output()
    assert line.startswith('case.decided camera-7/0001 {"label": "7", "source": "model", ')
