"""Receive the platform's webhooks: check each signature, then act once per event.

    WEBHOOK_SECRET=whsec_... python webhook_receiver.py

Listens on 127.0.0.1:RECEIVER_PORT (default 8001): register http://127.0.0.1:8001/ as the
endpoint. Standard library only; the `standardwebhooks` package does the same check.
"""

import base64
import hashlib
import hmac
import json
import os
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = base64.b64decode(os.environ["WEBHOOK_SECRET"].removeprefix("whsec_"))
PORT = int(os.environ.get("RECEIVER_PORT", "8001"))
TOLERANCE = 5 * 60  # seconds: older or newer timestamps are refused (replays)
seen: set[str] = set()  # use a table with a unique key in a real service


def verified(headers, body: bytes) -> bool:
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > TOLERANCE:
        return False
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    # Several signatures while a rotated secret is honoured: any one will do.
    return any(hmac.compare_digest(f"v1,{expected}", given)
               for given in headers.get("webhook-signature", "").split(" "))


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not verified(self.headers, body):
            self.send_response(400)
            self.end_headers()
            return
        msg_id = self.headers["webhook-id"]
        if msg_id not in seen:  # delivered at least once: act once per id
            seen.add(msg_id)
            event = json.loads(body)
            case = event["data"].get("case", {})
            outcome = event["data"].get("decision") or event["data"].get("queued") or {}
            print(event["type"], case.get("external_id"), json.dumps(outcome), flush=True)
        self.send_response(204)  # answer quickly; do slow work elsewhere
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", PORT), Receiver).serve_forever()
