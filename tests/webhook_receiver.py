"""A webhook receiver on 127.0.0.1 for the tests: records every request, answers as told
(a status, headers, a delay), and can hold a request until released. With its fixtures: a
running receiver, the client's endpoint on it, and cases routed through the lifecycle."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from reviewplatform import lifecycle
from reviewplatform.lifecycle import CaseRoute
from reviewplatform.models import Case, ReviewTask
from rollout.selectors import policy_current
from webhooks.models import WebhookEndpoint
from webhooks.services import endpoint_create

__all__ = ["Receiver", "Reply", "endpoint", "receiver", "route"]


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: held until this event is set (a receiver that hangs)
    hold: threading.Event | None = None


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered_at: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)

    def verify(self, secret: str) -> Any:
        """The payload, as the standardwebhooks package verifies it (an independent check of
        the signature, the id and the timestamp); raises when it does not verify."""
        return Webhook(secret).verify(self.body, self.headers)


class Receiver:
    """Listens on `port` (0: any free one); a receiver started again on the same port is the
    same endpoint back up."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Received] = []
        self.replies: deque[Reply] = deque()
        self.default = Reply()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                got = Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                               body, time.monotonic())
                with receiver.lock:
                    receiver.requests.append(got)
                    reply = receiver.replies.popleft() if receiver.replies else receiver.default
                if reply.hold is not None:
                    reply.hold.wait(60)
                time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up waiting
                got.answered_at = time.monotonic()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def reply(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def to(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    def wait_for(self, count: int, seconds: float = 30, path: str | None = None) -> None:
        deadline = time.monotonic() + seconds
        while len(self.to(path) if path else self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} request(s), not {count}"
            time.sleep(0.05)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


@pytest.fixture
def endpoint(client_user, receiver) -> WebhookEndpoint:
    return endpoint_create(owner=client_user, url=receiver.url("/hook"),
                           event_types=["case.decided"])


@pytest.fixture
def route(make_case, deployment):
    """Route a new case: decided by the model as `label`, or queued for humans."""
    policy = policy_current(deployment_id=deployment.pk)

    def routed(label: str | None = "7", **case_kwargs) -> Case:
        case = make_case(**case_kwargs)
        Case.objects.filter(pk=case.pk).update(status=Case.Status.RECEIVED)
        lifecycle.cases_route(case_ids=[case.pk], router=lambda cases: [CaseRoute(
            case_id=case.pk, policy_version_id=policy.pk, model_label=label,
            review_reason=None if label else ReviewTask.Reason.SHADOW)])
        return case
    return routed
