"""Submit every image in a folder as a case, safe to run again and to retry.

    REVIEW_API_KEY=... python submit_folder.py FOLDER

Environment: REVIEW_URL (default http://127.0.0.1:8000), REVIEW_API_KEY, REVIEW_DEPLOYMENT
(default digits), REVIEW_REGION (default north). Needs only `requests`.
"""

import hashlib
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

URL = os.environ.get("REVIEW_URL", "http://127.0.0.1:8000")
KEY = os.environ["REVIEW_API_KEY"]
DEPLOYMENT = os.environ.get("REVIEW_DEPLOYMENT", "digits")
REGION = os.environ.get("REVIEW_REGION", "north")
IMAGES = {".jpg", ".jpeg", ".png", ".webp"}


def submit(session: requests.Session, path: Path) -> requests.Response:
    image = path.read_bytes()
    external_id = f"{path.parent.name}/{path.name}"
    # The same file always gets the same key: a retry, or the whole script run again, answers
    # the first answer and never makes a second case.
    key = hashlib.sha256(f"{DEPLOYMENT}/{external_id}/".encode() + image).hexdigest()
    form = {"deployment": DEPLOYMENT, "region": REGION, "external_id": external_id,
            "captured_at": datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()}
    for attempt in range(6):
        try:
            response = session.post(f"{URL}/api/v1/cases/", data=form, timeout=30,
                                    headers={"Idempotency-Key": key},
                                    files={"image": (path.name, image)})
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(2 ** attempt)  # no answer: the key makes the retry safe
            continue
        busy = (response.status_code == 409
                and response.json()["code"] == "idempotency_key_in_progress")
        if response.status_code == 429 or response.status_code >= 500 or busy:
            time.sleep(float(response.headers.get("Retry-After", 2 ** attempt)))
            continue
        return response
    raise SystemExit(f"{path}: no answer after 6 tries")


def main(folder: str) -> None:
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {KEY}"
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() not in IMAGES:
            continue
        response = submit(session, path)
        body = response.json()
        if response.status_code == 201:
            again = " (already submitted)" if response.headers.get("Idempotent-Replayed") else ""
            print(f"{path.name}: case {body['id']}, {body['status']}{again}")
        else:
            print(f"{path.name}: refused ({body['code']}): {body['message']}")


if __name__ == "__main__":
    main(sys.argv[1])
