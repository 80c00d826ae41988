"""`make bench`: run every benchmark in bench/ (one process each), then print their figures.

Each runs as a module from the repository root (`python -m bench.NAME`), so that a benchmark's
file name never shadows a library module of the same name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SKIP = {"run.py", "harness.py", "__init__.py"}


def main() -> int:
    failed = []
    for script in sorted(p for p in HERE.glob("*.py") if p.name not in SKIP):
        print(f"== {script.stem}", flush=True)
        if subprocess.run([sys.executable, "-m", f"bench.{script.stem}"],
                          cwd=HERE.parent).returncode != 0:
            failed.append(script.stem)
    rows = []
    for result in sorted((HERE / "results").glob("*.json")):
        for key, value in json.loads(result.read_text()).items():
            rows.append((result.stem, key, value))
    width = max((len(f"{b}.{k}") for b, k, _ in rows), default=10)
    print(f"\n{'figure':<{width}}  value")
    for bench, key, value in rows:
        print(f"{bench + '.' + key:<{width}}  {value}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
