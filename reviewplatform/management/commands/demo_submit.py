import io
import random
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from PIL import Image

from inference.demo_model import low_resolution, night_time
from reviewplatform.demo import DEMO_DEPLOYMENT, DEMO_REGIONS
from reviewplatform.models import Case

# Share of degraded captures per region: the shift is concentrated where a guardrail should
# find it, and degraded captures are taken at night.
DEGRADED_SHARE = {"north": 0.08, "east": 0.55, "west": 0.08, "south": 0.4}


def _captured_at(rng: random.Random, now: datetime, tz: str, *, night: bool) -> datetime:
    day = (now - timedelta(days=rng.randrange(7))).astimezone(ZoneInfo(tz))
    hour = rng.choice([22, 23, 0, 1, 2, 3, 4, 5]) if night else rng.randrange(7, 21)
    local = day.replace(hour=hour, minute=rng.randrange(60), second=0, microsecond=0)
    return min(local, now.astimezone(ZoneInfo(tz)))


def post_within_rate(session: requests.Session, url: str, *, attempts: int = 5,
                     sleep: Callable[[float], None] = time.sleep,
                     **request: Any) -> requests.Response:
    """POST, and when the API answers 429 wait as long as its Retry-After says and try again
    (a few times): the API throttles each key to API_THROTTLE_RATE."""
    for _ in range(attempts - 1):
        response = session.post(url, **request)
        if response.status_code != 429:
            return response
        sleep(float(response.headers.get("Retry-After", "1")))
    return session.post(url, **request)


class Command(BaseCommand):
    help = ("Submit held-out demo digits as cases through the HTTP API, like an API client. "
            "A share are made night-time (dark, noisy) or low-resolution, concentrated in the "
            "east and south regions and at night. Cases already submitted are left alone.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--api-key-file", type=Path,
                            default=settings.VAR_DIR / "demo" / "api-key.txt")
        parser.add_argument("--images", type=Path,
                            default=settings.VAR_DIR / "demo" / "digits" / "test")
        parser.add_argument("--count", type=int, default=200)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--every", type=float, default=0.0,
                            help="then keep submitting one live case (captured now) every "
                                 "this many seconds until stopped; 0: do not")
        parser.add_argument("--unless-any", action="store_true",
                            help="do nothing if demo cases were submitted already (the "
                                 "simulated history's cases do not count)")

    def handle(self, *args: Any, url: str, api_key_file: Path, images: Path, count: int,
               seed: int, unless_any: bool, every: float, **options: Any) -> None:
        files = sorted(images.glob("*/*.png"))
        if not files:
            raise CommandError(f"no demo images under {images}: run train_demo_model first")
        rng = random.Random(seed)
        session = requests.Session()
        session.headers["Authorization"] = f"Api-Key {api_key_file.read_text().strip()}"
        if unless_any and Case.objects.filter(deployment__slug=DEMO_DEPLOYMENT,
                                              external_id__startswith="demo-").exists():
            self.stdout.write("the demo cases are already there")
        else:
            self._batch(session, url, rng, rng.sample(files, min(count, len(files))))
        if every > 0:
            self.stdout.write(f"submitting a live case every {every:g} s", ending="\n")
            self.stdout.flush()
            while True:
                time.sleep(every)
                self._one(session, url, rng, rng.choice(files), live=True)

    def _batch(self, session: requests.Session, url: str, rng: random.Random,
               paths: list[Path]) -> None:
        counts = {"created": 0, "existing": 0, "night": 0, "low_resolution": 0}
        for path in paths:
            status, kind = self._one(session, url, rng, path, live=False)
            counts["created" if status == 201 else "existing"] += 1
            if kind in counts:
                counts[kind] += 1
        self.stdout.write(
            f"submitted {counts['created']} demo cases ({counts['existing']} were already "
            f"there); {counts['night']} night-time and {counts['low_resolution']} "
            f"low-resolution captures")

    def _one(self, session: requests.Session, url: str, rng: random.Random, path: Path, *,
             live: bool) -> tuple[int, str]:
        """Submit one digit; a live one is captured now, with an id of its own."""
        now = datetime.now(tz=ZoneInfo("UTC"))
        code, _, tz = rng.choice(DEMO_REGIONS)
        image = Image.open(path).convert("RGB")
        kind = "clean"
        if rng.random() < DEGRADED_SHARE[code]:
            kind = "night" if rng.random() < 0.7 else "low_resolution"
            image = night_time(image, rng=rng) if kind == "night" else low_resolution(image)
        captured = (now if live else
                    _captured_at(rng, now, tz, night=kind != "clean" or rng.random() < 0.1))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        external_id = (f"live-{now:%Y%m%d%H%M%S%f}-{path.stem}" if live
                       else f"demo-{path.stem}")
        response = post_within_rate(
            session, f"{url}/api/v1/cases/",
            data={"deployment": DEMO_DEPLOYMENT, "region": code,
                  "captured_at": captured.isoformat(timespec="seconds"),
                  "external_id": external_id, "metadata": f'{{"demo_capture": "{kind}"}}'},
            files={"image": (path.name, buffer.getvalue(), "image/png")}, timeout=30)
        if response.status_code not in (201, 409):
            raise CommandError(f"{path}: {response.status_code} {response.text}")
        return response.status_code, kind
