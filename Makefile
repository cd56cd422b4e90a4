# agentlog: `make test` and `make demo` work on a fresh machine; both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint demo bench smoke clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The suite runs in JOBS worker processes (pytest-xdist; `make test JOBS=4`, or JOBS=0 for one process);
# tests marked xdist_group run on one worker, one after another. `pytest tests/x.py` alone runs serially.
JOBS ?= 2
PARALLEL = -n $(JOBS) --dist loadgroup

test: lint
	$(BIN)/python -m pytest -q $(PARALLEL)

# The unit tests alone: no daemons, subprocess mazes, simulations or browser.
test-fast: lint
	$(BIN)/python -m pytest -q $(PARALLEL) -m "not slow and not system"

# The layout's import rules (setup.cfg, import-linter) and ruff (pyproject.toml).
lint: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache agentlog tests tools

demo: $(STAMP)
	$(BIN)/python tools/demo.py

bench: $(STAMP)
	$(BIN)/python tools/bench.py

# The package as a user gets it: a wheel, installed with the mcp extra into a fresh virtual
# environment outside the source tree, then tools/smoke_installed.sh run from there.
smoke: $(STAMP)
	set -e; out=$$(mktemp -d); trap 'rm -rf "$$out"' EXIT; \
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir "$$out/wheel" . ; \
	$(PYTHON) -m venv "$$out/venv"; \
	"$$out/venv/bin/python" -m pip install --quiet "$$(ls "$$out"/wheel/agentlog-*.whl)[mcp]"; \
	cd "$$out" && bash "$(CURDIR)/tools/smoke_installed.sh" "$$out/venv/bin/agentlog"

clean:
	rm -rf $(VENV) build *.egg-info bench-results.json
