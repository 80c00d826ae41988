"""An embedded PostgreSQL for the demo, the tests and the benchmarks.

The server binaries come from the `pgserver` wheel (no system package). PostgreSQL refuses to
run as root: run as root, the server runs under a system user of its own (`pgserver`, created
on first use), the way pgserver itself does it. It listens on 127.0.0.1 at the given port and on
a socket in its data folder.

    python scripts/embedded_postgres.py start DATA_DIR PORT [--fast]   # prints DATABASE_URL
    python scripts/embedded_postgres.py stop DATA_DIR [--immediate]
    python scripts/embedded_postgres.py restart DATA_DIR

`--fast` turns off durability (fsync, synchronous commit, full-page writes): for throwaway test
and benchmark servers only. A second `start` of a running server only prints its URL.
"""

from __future__ import annotations

import argparse
import os
import pwd
import stat
import subprocess
import sys
import warnings
from pathlib import Path

# pgserver looks up a runtime folder at import, which it does not use here.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
import pgserver  # noqa: E402
from pgserver import utils as pgserver_utils  # noqa: E402

DATABASE = "reviewplatform"
SYSTEM_USER = "pgserver"
BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"
FAST = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")


def _run_as() -> str | None:
    """The system user the server runs as: a user of its own when we are root."""
    return SYSTEM_USER if os.geteuid() == 0 else None


def _prepare(pgdata: Path) -> str | None:
    user = _run_as()
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is not None:
        pgserver_utils.ensure_user_exists(user)
        pgserver_utils.ensure_prefix_permissions(pgdata)
        pgserver_utils.ensure_prefix_permissions(BIN)
        readable = stat.S_IRGRP | stat.S_IROTH
        pgserver_utils.ensure_folder_permissions(BIN, readable | stat.S_IXGRP | stat.S_IXOTH)
        pgserver_utils.ensure_folder_permissions(BIN.parent / "lib", readable)
        entry = pwd.getpwnam(user)
        os.chown(pgdata, entry.pw_uid, entry.pw_gid)
    return user


def url(port: int) -> str:
    return f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"


def running(pgdata: Path) -> bool:
    status = subprocess.run([str(BIN / "pg_ctl"), "-D", str(pgdata), "status"],
                            capture_output=True, user=_run_as(), check=False)
    return status.returncode == 0


def start(pgdata: Path, port: int, *, fast: bool = False) -> str:
    """Initialise the data folder if it is new, start the server, create the database."""
    pgdata = pgdata.resolve()
    user = _prepare(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        pgserver.initdb(["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"],
                        pgdata=pgdata, user=user)
    if not running(pgdata):
        options = (f"-h 127.0.0.1 -p {port} -k {pgdata} -c max_connections=200"
                   + (f" {FAST}" if fast else ""))
        try:
            pgserver.pg_ctl(["-w", "-t", "60", "-l", str(pgdata / "server.log"), "-o", options,
                             "start"], pgdata=pgdata, user=user, timeout=90)
        except subprocess.CalledProcessError:
            log = pgdata / "server.log"
            sys.stderr.write(log.read_text()[-4000:] if log.exists() else "")
            raise
    exists = pgserver.psql([
        "-h", str(pgdata), "-p", str(port), "-U", "postgres", "-d", "postgres", "-tA",
        "-c", "SELECT 1 FROM pg_database WHERE datname = 'reviewplatform'"])
    if exists.strip() != "1":
        pgserver.createdb(["-h", str(pgdata), "-p", str(port), "-U", "postgres", DATABASE])
    return url(port)


def stop(pgdata: Path, *, immediate: bool = False) -> None:
    pgdata = pgdata.resolve()
    if (pgdata / "PG_VERSION").exists() and running(pgdata):
        mode = ["-m", "immediate"] if immediate else ["-m", "fast"]
        pgserver.pg_ctl(["-w", *mode, "stop"], pgdata=pgdata, user=_run_as(), timeout=90)


def restart(pgdata: Path) -> None:
    """Restart with the options it was started with (pg_ctl keeps them in postmaster.opts)."""
    pgserver.pg_ctl(["-w", "-t", "60", "-m", "fast", "-l", str(pgdata.resolve() / "server.log"),
                     "restart"], pgdata=pgdata.resolve(), user=_run_as(), timeout=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    begin = commands.add_parser("start")
    begin.add_argument("pgdata", type=Path)
    begin.add_argument("port", type=int)
    begin.add_argument("--fast", action="store_true")
    end = commands.add_parser("stop")
    end.add_argument("pgdata", type=Path)
    end.add_argument("--immediate", action="store_true")
    again = commands.add_parser("restart")
    again.add_argument("pgdata", type=Path)
    args = parser.parse_args()
    if args.command == "start":
        print(start(args.pgdata, args.port, fast=args.fast))
    elif args.command == "stop":
        stop(args.pgdata, immediate=args.immediate)
    else:
        restart(args.pgdata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
