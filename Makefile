# The two commands: `make run` (embedded profile) and `make test` (everything).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test venv system-deps bench clean

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

# pytest exits 5 when it collected no tests: that is a failure here, never a pass.
test: $(STAMP) system-deps
	$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; \
	exit $$rc

bench: $(STAMP)
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/scrub.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
