"""Health for a load balancer or an orchestrator, without logging in.

`/healthz`: the web process answers (liveness; touches nothing else).
`/readyz`: it can do its work: the database answers, the broker answers, and at least one
Celery worker answered a ping (remembered for HEALTH_WORKER_CACHE_SECONDS, so that probes do not
flood the broker). 200 when all hold, 503 naming what does not; counts only, no host names."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError as BrokerError

from .celery import app as celery_app

WORKERS_KEY = "health-workers-answering"


def _database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        return False


def _broker() -> bool:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_TIMEOUT_SECONDS)
        return True
    except (BrokerError, OSError):
        return False


def workers_answering() -> int:
    """How many Celery workers answer a ping; remembered a few seconds."""
    answering = cache.get(WORKERS_KEY)
    if answering is None:
        try:
            replies = celery_app.control.ping(timeout=settings.HEALTH_TIMEOUT_SECONDS) or []
        except (BrokerError, OSError):
            replies = []
        answering = len(replies)
        cache.set(WORKERS_KEY, answering, timeout=settings.HEALTH_WORKER_CACHE_SECONDS)
    return int(answering)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    database, broker = _database(), _broker()
    workers = workers_answering() if broker else 0
    checks: dict[str, Any] = {"database": "ok" if database else "unreachable",
                              "broker": "ok" if broker else "unreachable",
                              "workers": workers}
    ready = database and broker and workers > 0
    return JsonResponse({"status": "ready" if ready else "not ready", **checks},
                        status=200 if ready else 503)
