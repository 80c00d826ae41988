"""The platform's real processes for the fault tests, and the services they stand on.

`Platform` starts the command lines `make demo` runs (`reviewplatform.processes`: gunicorn,
the worker, the webhooks worker, beat) on the test database, the test Redis and this session's
media folder, each leading its own process group, and stops or kills them by name. `Redis`
stops and starts the Redis that scripts/with-services.sh started (same port, no persistence:
a restart loses the queue). `postgres_restart` stops the PostgreSQL that scripts/with-services.sh
started and starts it again. `Clients` post cases over HTTP at a steady rate from several
threads and keep every answer.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.db import connection

from reviewplatform.processes import platform_processes

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CAPTURED_AT = "2026-05-01T12:00:00+02:00"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url() -> str:
    db = connection.settings_dict
    return (f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/"
            f"{db['NAME']}")


class Platform:
    """The platform's processes by name (`web`, `worker`, `webhooks`, `beat`)."""

    def __init__(self, work: Path, **environment: str) -> None:
        self.work = work
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.commands = platform_processes(bin_dir=BIN, bind=f"127.0.0.1:{self.port}",
                                           beat_schedule=work / "celerybeat-schedule")
        self.env = {
            **os.environ, "DJANGO_SETTINGS_MODULE": "tests.faults.settings_platform",
            "DATABASE_URL": database_url(), "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "STATIC_ROOT": str(work / "static"), "API_THROTTLE_RATE": "1000000/min",
            "PREDICTION_STALE_SECONDS": "5", "WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1", **environment}
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.started = Counter[str]()

    def log(self, name: str) -> Path:
        return self.work / f"{name}-{self.started[name]}.log"

    def start(self, *names: str, **environment: str) -> None:
        """Start the named processes (a worker gets a fresh host name) and wait until each is
        ready: the web server answers, a worker says `ready.`, beat says it starts."""
        for name in names:
            command = list(self.commands[name])
            if name == "worker":
                command += ["--hostname", f"worker-{uuid.uuid4().hex[:6]}@%h"]
            self.started[name] += 1
            with self.log(name).open("wb") as log:
                self.running[name] = subprocess.Popen(
                    command, cwd=ROOT, env={**self.env, **environment}, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True)
        for name in names:
            self._wait_ready(name)

    def _wait_ready(self, name: str) -> None:
        ready = {"worker": "ready.", "webhooks": "ready.", "beat": "beat: Starting"}.get(name)
        process = self.running[name]
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"{name} exited:\n{self.log(name).read_text()}"
            assert time.monotonic() < deadline, (f"{name} did not start:\n"
                                                 f"{self.log(name).read_text()[-3000:]}")
            if ready is not None and ready in self.log(name).read_text():
                return
            if ready is None:
                with (contextlib.suppress(OSError),
                      urllib.request.urlopen(f"{self.url}/healthz", timeout=5)):
                    return
            time.sleep(0.2)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the process and its children (its whole group), and wait for it."""
        process = self.running.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        for name in list(self.running):
            self.kill(name, signal.SIGTERM)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-2000:]}"
                         for path in sorted(self.work.glob("*.log")))


class Redis:
    """The Redis of REDIS_URL, stopped and started again on the same port (no persistence)."""

    def __init__(self, work: Path) -> None:
        self.port = urlparse(settings.REDIS_URL).port or 6379
        self.work = work
        self.process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-p", str(self.port), "shutdown", "nosave"],
                       capture_output=True, check=False, timeout=30)
        if self.process is not None:
            self.process.wait(timeout=30)
            self.process = None
        deadline = time.monotonic() + 30
        while self.answers():
            assert time.monotonic() < deadline, "Redis did not stop"
            time.sleep(0.1)

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.work),
             "--logfile", str(self.work / "redis.log")], start_new_session=True)
        deadline = time.monotonic() + 30
        while not self.answers():
            assert time.monotonic() < deadline, "Redis did not start"
            time.sleep(0.1)

    def answers(self) -> bool:
        return subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True,
                              check=False, timeout=10).stdout.strip() == b"PONG"


def postgres_pgdata() -> Path:
    pgdata = os.environ.get("TEST_PGDATA")
    assert pgdata, "TEST_PGDATA is not set: run the faults under scripts/with-services.sh"
    return Path(pgdata)


def postgres_stop() -> None:
    subprocess.run([sys.executable, "scripts/embedded_postgres.py", "stop",
                    str(postgres_pgdata())], cwd=ROOT, check=True, timeout=120)


def postgres_start() -> None:
    port = str(connection.settings_dict["PORT"])
    subprocess.run([sys.executable, "scripts/embedded_postgres.py", "start",
                    str(postgres_pgdata()), port, "--fast"], cwd=ROOT, check=True,
                   capture_output=True, timeout=120)


# --- clients --------------------------------------------------------------------------------

BOUNDARY = f"faults-{uuid.uuid4().hex}"


def case_body(*, external_id: str, image: bytes, region: str = "north") -> bytes:
    fields = {"deployment": "digits", "region": region, "external_id": external_id,
              "captured_at": CAPTURED_AT}
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
             f"{value}\r\n".encode() for name, value in fields.items()]
    parts += [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; '
              f'filename="{external_id}.png"\r\nContent-Type: image/png\r\n\r\n'.encode(),
              image, f"\r\n--{BOUNDARY}--\r\n".encode()]
    return b"".join(parts)


@dataclass
class Answer:
    external_id: str
    status: int | None  # None: no answer (the connection failed)
    body: bytes
    at: float
    seconds: float  # from sending to the answer


@dataclass
class Clients:
    """`count` threads posting cases to `POST /api/v1/cases/` at `rate` cases/s in all, each
    case once (a client that gets no answer does not resend: the answers show it)."""

    url: str
    key: str
    images: list[bytes]
    rate: float
    count: int = 4
    prefix: str = "c"
    regions: tuple[str, ...] = ("north",)
    answers: list[Answer] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(n,), daemon=True)
                         for n in range(self.count)]

    def _client(self, number: int) -> None:
        parsed = urlparse(self.url)
        start = time.perf_counter()
        k = 0
        while not self._stop.is_set():
            due = start + (k * self.count + number) / self.rate
            time.sleep(max(0.0, due - time.perf_counter()))
            if self._stop.is_set():
                break
            n = k * self.count + number
            external_id = f"{self.prefix}-{number}-{k}"
            k += 1
            body = case_body(external_id=external_id, image=self.images[n % len(self.images)],
                             region=self.regions[n % len(self.regions)])
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
            began = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/cases/", body, {
                    "Authorization": f"Api-Key {self.key}",
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
                response = conn.getresponse()
                answer = Answer(external_id, response.status, response.read(), time.time(),
                                time.perf_counter() - began)
            except (OSError, http.client.HTTPException) as exc:
                answer = Answer(external_id, None, repr(exc).encode(), time.time(),
                                time.perf_counter() - began)
            finally:
                conn.close()
            with self._lock:
                self.answers.append(answer)

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)

    def statuses(self) -> Counter[int | None]:
        with self._lock:
            return Counter(a.status for a in self.answers)

    def stored(self) -> list[str]:
        """External ids the platform answered `201` for."""
        with self._lock:
            return [a.external_id for a in self.answers if a.status == 201]

    def sent(self) -> int:
        with self._lock:
            return len(self.answers)

    def others(self) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if a.status != 201]


def json_of(answer: Answer) -> object:
    return json.loads(answer.body)
