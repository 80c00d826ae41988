#!/usr/bin/env bash
# Lint, type-check and run the whole suite (called by `make test` inside scripts/with-services.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export SECRET_KEY=${SECRET_KEY:-test-secret-key}
export DJANGO_SETTINGS_MODULE=reviewplatform.settings.test
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy"
.venv/bin/mypy reviewplatform inference rollout review webhooks
echo "== import contracts"
.venv/bin/lint-imports --no-cache
echo "== pytest"
.venv/bin/pytest "$@"
