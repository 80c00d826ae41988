# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test bench lint audit install clean

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

# Known vulnerabilities in the installed dependencies (PyPI's advisory data, over the network).
# --strict: a dependency that could not be checked fails the audit instead of passing unseen.
audit: $(STAMP)
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

bench: $(STAMP)
	scripts/with-services.sh $(BIN)/python bench/run.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache bench/results test-artifacts
