"""`make demo` as a newcomer runs it: scripts/demo.py starts everything on its own ports and in
its own folder, serves the pages, predicts every demo case, and stops cleanly on SIGTERM
(Ctrl-C). It runs as `make demo DEMO_HISTORY=0` (no simulated history: the deployment starts
in the shadow stage with only the submitted cases); tests/test_demo_history.py seeds the
history."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parent.parent
CASES = 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


class Demo:
    def __init__(self, var: Path, ports: dict[str, int]) -> None:
        self.var = var
        self.ports = ports
        self.output = var.parent / "demo-output.log"
        env = {name: value for name, value in os.environ.items()
               if name not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE",
                               "MEDIA_ROOT", "STATIC_ROOT", "SECRET_KEY", "ENV_FILE"}}
        env.update({name: str(port) for name, port in ports.items()})
        env.update({"DEMO_VAR": str(var), "DEMO_EPOCHS": "1", "DEMO_CASES": str(CASES),
                    "DEMO_HISTORY": "0", "DEMO_LIVE_SECONDS": "3", "PYTHONPATH": str(ROOT)})
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "demo.py")], cwd=ROOT, env=env,
            stdout=self.output.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        logs = "".join(f"\n--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                       for path in sorted((self.var / "log").glob("*.log")))
        return self.output.read_text(errors="replace") + logs

    def wait_for_url(self, seconds: float) -> str:
        deadline = time.monotonic() + seconds
        while not (found := re.search(r"The review platform is running at (\S+)/\n",
                                      self.output.read_text())):
            assert self.process.poll() is None, f"the demo exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"the demo did not start:\n{self.log()}"
            time.sleep(1)
        return found.group(1)

    def stop(self) -> None:
        """What a forgotten demo needs: SIGTERM, then SIGKILL and its database stopped."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        subprocess.run([sys.executable, str(ROOT / "scripts" / "embedded_postgres.py"), "stop",
                        str(self.var / "pg"), "--immediate"], check=False, capture_output=True)


@pytest.fixture
def demo() -> Iterator[Demo]:
    # Its own folder, readable by the database's system user when run as root.
    folder = Path(tempfile.mkdtemp(prefix="reviewplatform-demo-"))
    folder.chmod(0o755)
    ports = {name: int(os.environ.get(f"SMOKE_{name}") or _free_port())
             for name in ("DEMO_PORT", "DEMO_REDIS_PORT", "DEMO_PG_PORT")}
    started = Demo(folder / "var", ports)
    try:
        yield started
    finally:
        started.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_make_demo_serves_predicts_and_stops(demo):
    started = time.monotonic()
    url = demo.wait_for_url(seconds=600)
    assert url == f"http://127.0.0.1:{demo.ports['DEMO_PORT']}"
    api_key = re.search(r"API key:\s+(\S+)", demo.output.read_text()).group(1)
    assert requests.get(f"{url}/login/", timeout=10).status_code == 200

    # The worker predicts every demo case with both of the demo's model versions.
    database = f"postgresql://postgres@127.0.0.1:{demo.ports['DEMO_PG_PORT']}/reviewplatform"
    deadline = time.monotonic() + 300
    with psycopg.connect(database, autocommit=True) as connection:
        def one(sql: str) -> int:
            return connection.execute(sql).fetchone()[0]

        assert one("SELECT count(*) FROM reviewplatform_case WHERE external_id LIKE 'demo-%'"
                   ) == CASES
        assert one("SELECT count(*) FROM auth_user WHERE username LIKE 'sim-%'") == 0
        assert one("SELECT count(*) FROM inference_modelversion WHERE is_active") == 2
        # Live cases keep arriving, one every DEMO_LIVE_SECONDS: wait for two of them, then
        # for every case submitted so far to be predicted by both versions and routed.
        while one("SELECT count(*) FROM reviewplatform_case WHERE external_id LIKE 'live-%'"
                  ) < 2:
            assert time.monotonic() < deadline, f"no live cases arrive:\n{demo.log()}"
            time.sleep(1)
        last = one("SELECT max(id) FROM reviewplatform_case")
        while waiting := one("SELECT count(*) FROM reviewplatform_case c "
                             "JOIN inference_modelversion v ON v.deployment_id = c.deployment_id "
                             f"AND v.is_active WHERE c.id <= {last} AND NOT EXISTS (SELECT 1 "
                             "FROM inference_prediction p WHERE p.case_id = c.id "
                             "AND p.model_version_id = v.id)"):
            assert time.monotonic() < deadline, f"{waiting} predictions missing:\n{demo.log()}"
            time.sleep(1)
        assert one("SELECT count(*) FROM inference_prediction WHERE status = 'ok' "
                   f"AND case_id <= {last}") == 2 * one(
                       f"SELECT count(*) FROM reviewplatform_case WHERE id <= {last}")
        while one("SELECT count(*) FROM reviewplatform_case WHERE status = 'received' "
                  f"AND id <= {last}"):
            assert time.monotonic() < deadline, f"cases were not routed:\n{demo.log()}"
            time.sleep(1)
        case_id = one("SELECT min(id) FROM reviewplatform_case")
    predicted = time.monotonic() - started

    # The API client reads a case; the reviewer's dashboard shows the demo's queue (shadow
    # stage: every case waits for a human).
    response = requests.get(f"{url}/api/v1/cases/{case_id}/", timeout=10,
                            headers={"Authorization": f"Api-Key {api_key}"})
    assert response.status_code == 200 and response.json()["status"] == "in_review"
    session = requests.Session()
    login = session.get(f"{url}/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    home = session.post(f"{url}/login/", timeout=10, headers={"Referer": f"{url}/login/"},
                        data={"username": "reviewer", "password": "reviewer-demo",
                              "csrfmiddlewaretoken": token})
    assert home.status_code == 200 and home.url == f"{url}/", home.text[:500]
    rows = re.findall(r'<tr><td>(\w+)</td><td title="(\w+)">[^<]*</td>\s*<td class="num">(\d+)',
                      home.text)
    assert [(name, stage) for name, stage, _ in rows] == [("digits", "shadow")], home.text
    assert int(rows[0][2]) >= CASES + 2, home.text  # the demo's cases and the live ones

    # Ctrl-C: everything stops, the embedded PostgreSQL too, and the ports are free again.
    demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(timeout=60) == 0, demo.log()
    assert "stopping" in demo.output.read_text()
    for name, port in demo.ports.items():
        assert port_free(port), f"{name} {port} is still taken"
    assert not (demo.var / "pg" / "postmaster.pid").exists()
    # Everything it wrote is under DEMO_VAR, the media too.
    assert len(list((demo.var / "media").rglob("*.png"))) >= CASES + 2
    assert (demo.var / "demo" / "digits.pkl").exists()
    print(f"demo: predicted every case {predicted:.0f}s after start")
