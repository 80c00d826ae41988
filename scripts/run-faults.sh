#!/usr/bin/env bash
# The fault tests (tests/faults, marker `faults`): called by `make faults` inside
# scripts/with-services.sh, which exports TEST_PGDATA (the PostgreSQL a fault restarts) and
# REDIS_URL (the Redis a fault stops).
set -euo pipefail
cd "$(dirname "$0")/.."
export SECRET_KEY=${SECRET_KEY:-test-secret-key}
export DJANGO_SETTINGS_MODULE=reviewplatform.settings.test
started=$(date +%s)
status=0
# Arguments replace the default selection (make faults PYTEST_ARGS=tests/faults/test_soak.py).
.venv/bin/pytest -m faults -p no:cacheprovider "${@:-tests/faults}" || status=$?
echo "make faults took $(( $(date +%s) - started )) s"
exit $status
