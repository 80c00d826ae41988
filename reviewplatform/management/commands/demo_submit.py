import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reviewplatform.demo import DEMO_DEPLOYMENT, DEMO_REGIONS


class Command(BaseCommand):
    help = ("Submit the held-out demo digits as cases through the HTTP API, like an API client. "
            "Cases already submitted (same external_id) are left alone.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--api-key-file", type=Path,
                            default=settings.VAR_DIR / "demo" / "api-key.txt")
        parser.add_argument("--images", type=Path,
                            default=settings.VAR_DIR / "demo" / "digits" / "test")
        parser.add_argument("--count", type=int, default=120)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, url: str, api_key_file: Path, images: Path, count: int,
               seed: int, **options: Any) -> None:
        files = sorted(images.glob("*/*.png"))
        if not files:
            raise CommandError(f"no demo images under {images}: run train_demo_model first")
        rng = random.Random(seed)
        chosen = rng.sample(files, min(count, len(files)))
        session = requests.Session()
        session.headers["Authorization"] = f"Api-Key {api_key_file.read_text().strip()}"
        now = datetime.now(tz=ZoneInfo("UTC"))
        created = existing = 0
        for path in chosen:
            code, _, tz = rng.choice(DEMO_REGIONS)
            captured = (now - timedelta(minutes=rng.randrange(7 * 24 * 60))).astimezone(
                ZoneInfo(tz))
            with path.open("rb") as image:
                response = session.post(
                    f"{url}/api/v1/cases/",
                    data={"deployment": DEMO_DEPLOYMENT, "region": code,
                          "captured_at": captured.isoformat(timespec="seconds"),
                          "external_id": f"demo-{path.stem}"},
                    files={"image": (path.name, image, "image/png")}, timeout=30)
            if response.status_code == 201:
                created += 1
            elif response.status_code == 409:
                existing += 1
            else:
                raise CommandError(f"{path}: {response.status_code} {response.text}")
        self.stdout.write(f"submitted {created} demo cases ({existing} were already there)")
