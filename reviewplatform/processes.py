"""The platform's processes as `make demo` runs them, said once: the demo starts them, and the
intake benchmark measures the same command lines."""

from __future__ import annotations

from pathlib import Path


def platform_processes(*, bin_dir: Path, bind: str, beat_schedule: Path) -> dict[str, list[str]]:
    """Command lines by name: the web server, the worker that predicts (one process: the
    model's threads use the cores), the webhooks worker (threads: sending is waiting) and beat."""
    celery = [str(bin_dir / "celery"), "-A", "reviewplatform"]
    return {
        "web": [str(bin_dir / "gunicorn"), "reviewplatform.wsgi", "--bind", bind,
                "--workers", "2", "--preload", "--access-logfile", "-"],
        "worker": [*celery, "worker", "--queues", "default,inference", "--concurrency", "1",
                   "--loglevel", "INFO"],
        "webhooks": [*celery, "worker", "--queues", "webhooks", "--pool", "threads",
                     "--concurrency", "4", "--hostname", "webhooks@%h", "--loglevel", "INFO"],
        "beat": [*celery, "beat", "--loglevel", "INFO", "--schedule", str(beat_schedule)],
    }
