# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test faults bench lint audit install clean tour

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	scripts/ensure-system.sh
	$(BIN)/python scripts/demo.py

lint: $(STAMP)
	$(BIN)/ruff check .
	SECRET_KEY=lint $(BIN)/mypy reviewplatform inference rollout review webhooks
	$(BIN)/lint-imports --no-cache

test: $(STAMP)
	scripts/ensure-system.sh --browser
	scripts/with-services.sh scripts/run-tests.sh $(PYTEST_ARGS)

# Faults on the real processes (tests/faults; docs/reliability.md): a worker killed, Redis
# stopped, PostgreSQL restarted, a corrupt model, an expired lease, a receiver down, a soak.
faults: $(STAMP)
	scripts/ensure-system.sh
	scripts/with-services.sh scripts/run-faults.sh $(PYTEST_ARGS)

# Known vulnerabilities in the installed dependencies (PyPI's advisory data, over the network).
# Known vulnerabilities fail it; dependencies the advisory service could not be asked about are
# named and counted (AUDIT_ARGS=--strict fails on them too).
audit: $(STAMP)
	$(BIN)/python scripts/audit.py $(AUDIT_ARGS)

bench: $(STAMP)
	scripts/with-services.sh $(BIN)/python bench/run.py

# The README's tour: the screenshots the browser tests took in the last `make test`.
tour:
	test -d test-artifacts/tour || { echo "run make test first: it takes the screenshots"; exit 1; }
	cp test-artifacts/tour/*.png docs/tour/

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench/results
	rm -rf test-artifacts
