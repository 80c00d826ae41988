"""The layers point one way without tricks: no module of the platform imports another of its
modules inside a function (where an import would hide a circle from a reader)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("reviewplatform", "inference", "rollout", "review", "webhooks")
# Django runs AppConfig.ready() once the apps are loaded: its imports are the documented way.
ALLOWED = {("reviewplatform/apps.py", ".roles"), ("reviewplatform/apps.py", ".models"),
           ("reviewplatform/apps.py", ".services.api_keys")}


def _imports_inside_functions(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                name = "." * inner.level + (inner.module or "")
            elif isinstance(inner, ast.Import):
                name = inner.names[0].name
            else:
                continue
            if name.startswith(".") or name.split(".")[0] in PACKAGES:
                found.append((inner.lineno, name))
    return found


def test_it_has_no_import_of_its_own_modules_inside_a_function():
    hidden = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if "/migrations/" in relative:
                continue
            for line, name in _imports_inside_functions(path):
                if (relative, name) not in ALLOWED:
                    hidden.append(f"{relative}:{line} imports {name}")

    assert hidden == []
