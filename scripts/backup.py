"""Back up and restore the platform: the PostgreSQL database and the media folder.

    python scripts/backup.py backup DEST      # writes DEST/database.dump and DEST/media.tar.gz
    python scripts/backup.py restore SRC      # into an empty database and media folder

The database comes from DATABASE_URL and the media folder from MEDIA_ROOT (by default the
demo's: var/pg on DEMO_PG_PORT and var/media). The database is dumped with `pg_dump
--format=custom` and restored with `pg_restore`, both from the embedded server's own binaries
(the pgserver wheel), so the client always matches the server. Back up the two together: the
database names the image files, and the media folder holds them. docs/operations.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embedded_postgres

ROOT = Path(__file__).resolve().parent.parent
DATABASE_DUMP = "database.dump"
MEDIA_ARCHIVE = "media.tar.gz"


def _database_url() -> str:
    return os.environ.get("DATABASE_URL") or embedded_postgres.url(
        int(os.environ.get("DEMO_PG_PORT", "54320")))


def _media_root() -> Path:
    return Path(os.environ.get("MEDIA_ROOT") or ROOT / "var" / "media")


def backup(dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run([str(embedded_postgres.BIN / "pg_dump"), "--format=custom", "--no-owner",
                    f"--file={dest / DATABASE_DUMP}", _database_url()], check=True)
    media = _media_root()
    with tarfile.open(dest / MEDIA_ARCHIVE, "w:gz") as archive:
        if media.exists():
            archive.add(media, arcname=".")
    print(f"backed up the database to {dest / DATABASE_DUMP} and {media} to "
          f"{dest / MEDIA_ARCHIVE}")


def restore(src: Path) -> None:
    for name in (DATABASE_DUMP, MEDIA_ARCHIVE):
        if not (src / name).is_file():
            raise SystemExit(f"{src / name} is missing: not a backup made by this script")
    subprocess.run([str(embedded_postgres.BIN / "pg_restore"), "--no-owner", "--exit-on-error",
                    f"--dbname={_database_url()}", str(src / DATABASE_DUMP)], check=True)
    media = _media_root()
    media.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src / MEDIA_ARCHIVE, "r:gz") as archive:
        archive.extractall(media, filter="data")
    print(f"restored the database from {src / DATABASE_DUMP} and the media folder into {media}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["backup", "restore"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    (backup if args.action == "backup" else restore)(args.folder)


if __name__ == "__main__":
    main()
