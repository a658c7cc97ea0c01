# The two commands: `make run` (embedded profile) and `make test` (everything, lint first).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run lint test test-fault test-fast venv system-deps bench clean dock-wheel lock

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/evidence up

system-deps:
	bash scripts/system-deps.sh

# Style (ruff) and the layer contracts (import-linter, [tool.importlinter] in pyproject.toml:
# the core imports neither api nor workers, the dock agent stands alone, the offline verifier
# needs no database or web code). All three run, then the target fails if any failed.
# `make test` and `make test-fast` run it first, so CI does.
lint: $(STAMP)
	@rc=0; \
	$(BIN)/ruff check . || rc=1; \
	$(BIN)/ruff format --check . || rc=1; \
	$(BIN)/lint-imports || rc=1; \
	exit $$rc

# pytest exits 5 when it collected no tests: that is a failure here, never a pass.
PYTEST := $(BIN)/python -m pytest
# The main suite's coverage must not fall below this (per cent of lines, counted in the test
# process only: see docs/testing.md). Raise it when coverage rises; never lower it to pass.
COVERAGE_FLOOR := 88
COVERAGE := --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)
FAULT_LOG := .pytest-fault.log

# The fault suite (tests marked `fault`: outages, a full disk, load; several minutes of
# mostly waiting) runs beside the main suite, in a pytest of its own with its own servers,
# so `make test` takes about as long as the longer of the two. Its output is printed after
# the main suite's; the target fails if either fails (or collects nothing).
test: $(STAMP) system-deps lint
	@rm -f $(FAULT_LOG); \
	$(PYTEST) -m fault -p no:cacheprovider > $(FAULT_LOG) 2>&1 & fault=$$!; \
	trap 'kill $$fault 2>/dev/null' INT TERM; \
	$(PYTEST) -m "not fault" $(COVERAGE); main=$$?; \
	wait $$fault; faults=$$?; \
	echo "=================== fault suite (tests marked fault) ==================="; \
	cat $(FAULT_LOG); \
	rc() { if [ $$1 -eq 5 ]; then echo "pytest ($$2) collected no tests: failing" >&2; return 1; fi; return $$1; }; \
	rc $$main "main suite"; main=$$?; rc $$faults "fault suite"; faults=$$?; \
	echo "main suite: exit $$main; fault suite: exit $$faults"; \
	[ $$main -eq 0 ] && [ $$faults -eq 0 ]

# The fault suite alone.
test-fault: $(STAMP) system-deps
	$(PYTEST) -m fault; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# For developers, while changing code: everything but the end-to-end tests (marked e2e: a
# running store, the browser), the fault suite and S3; stops at the first failure. About
# two minutes on two cores; `make test` before you push.
test-fast: $(STAMP) lint
	$(PYTEST) -x -m "not fault and not e2e and not s3"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

# SEARCH_ROWS: clips the search benchmark loads on each engine (10^6 takes minutes).
SEARCH_ROWS ?= 1000000

bench: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/scrub.py
	$(BIN)/python bench/search.py --rows $(SEARCH_ROWS)
	$(BIN)/python bench/proxy.py
	$(BIN)/python bench/workers.py
	$(BIN)/python bench/serve.py --accel
	nice $(BIN)/python bench/ingest.py
	nice $(BIN)/python bench/bundle.py

# The docking agent alone, as a wheel a docking PC installs without the server's dependencies
# (docs/dock.md): deploy/dock-package/pyproject.toml and a copy of evidence_dock, built apart
# from the repository's own pyproject. Any Python 3.11 with pip will do.
DOCK_PYTHON ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
DOCK_BUILD ?= build/dock-package
DOCK_DIST ?= dist
dock-wheel:
	rm -rf $(DOCK_BUILD) && mkdir -p $(DOCK_BUILD) $(DOCK_DIST)
	cp deploy/dock-package/pyproject.toml deploy/dock-package/README.md $(DOCK_BUILD)/
	cp -R evidence_dock $(DOCK_BUILD)/
	find $(DOCK_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	$(DOCK_PYTHON) -m pip wheel -q --no-deps -w $(DOCK_DIST) $(DOCK_BUILD)

# The production image's exact dependencies, with their hashes (deploy/Dockerfile installs
# from it with --require-hashes): every platform, Python 3.11. Run after changing
# pyproject.toml's dependencies and commit the result; tests/test_deploy_lock.py fails while
# the lock no longer satisfies pyproject.toml.
lock: $(STAMP)
	$(BIN)/uv pip compile pyproject.toml deploy/build-requirements.in --universal \
		--python-version 3.11 --generate-hashes --custom-compile-command "make lock" \
		--quiet -o deploy/requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis $(FAULT_LOG) build/dock-package
