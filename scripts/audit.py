"""`make audit`: the installed dependencies against PyPI's advisories (pip-audit).

Fails on any known vulnerability. A dependency the advisory service could not be asked about
(a machine that reaches the package index but not its JSON API) is reported by name and count,
never passed over in silence; it fails the audit only with --strict."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent


def main(strict: bool) -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "audit.json"
        done = subprocess.run([str(BIN / "pip-audit"), "--skip-editable", "--progress-spinner",
                               "off", "--format", "json", "--output", str(report)],
                              capture_output=True, text=True)
        if not report.exists():
            print(done.stderr, file=sys.stderr)
            return done.returncode or 1
        dependencies = json.loads(report.read_text())["dependencies"]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    unchecked = [d for d in dependencies if "skip_reason" in d]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} "
                  f"(fixed in {fixed})")
    checked = len(dependencies) - len(unchecked)
    print(f"{checked} of {len(dependencies)} dependencies audited, "
          f"{len(vulnerable)} with known vulnerabilities")
    if unchecked:
        names = ", ".join(d["name"] for d in unchecked[:10])
        more = f" and {len(unchecked) - 10} more" if len(unchecked) > 10 else ""
        print(f"NOT AUDITED: {len(unchecked)} dependencies the advisory service did not answer "
              f"for ({names}{more}): {unchecked[0]['skip_reason']}", file=sys.stderr)
    if vulnerable or (strict and unchecked):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(strict="--strict" in sys.argv[1:]))
