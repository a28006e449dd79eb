# One command runs the system (demo), one checks it: lint, types, the dependency audit and the
# fast test suite (test); the long runs have targets of their own. All create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TOOLS := $(VENV)/tools

.PHONY: demo test test-slow test-soak test-jepsen lint audit bench clean

# requirements.lock pins every distribution of the dev environment: installs are
# reproducible (constraints), and `make audit` checks exactly those versions.
$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Sluice needs Python 3.11 or newer")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/sluice up --demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# Fails on a known vulnerability; only warns when the vulnerability service is unreachable.
audit: $(STAMP)
	scripts/audit-deps.sh

# Re-run when a fetch script changes (a new tool, a new pinned version).
$(TOOLS)/.fetched: scripts/fetch-promtool.sh scripts/ensure-chromium.sh scripts/fetch-axe.sh | $(STAMP)
	scripts/fetch-promtool.sh $(TOOLS)
	scripts/ensure-chromium.sh
	scripts/fetch-axe.sh $(TOOLS)
	touch $@

test: lint audit $(TOOLS)/.fetched
	PATH="$(CURDIR)/$(TOOLS):$$PATH" $(BIN)/pytest -m "not slow"

# The slow tests include a real Prometheus and Alertmanager (Debian's packages, installed
# when missing and possible; the test skips and says why otherwise).
test-slow: $(STAMP)
	scripts/ensure-prometheus.sh
	$(BIN)/pytest -m "slow and not soak and not jepsen" -s

# Overload at 3x capacity (SLUICE_OVERLOAD_S, 300 s, then the drain) and a soak at 30 msg/s
# (SLUICE_SOAK_S, 1800 s): about 50 minutes.
test-soak: $(STAMP)
	$(BIN)/pytest -m soak -s

# The randomized fault run of tests/reliability/jepsen: SLUICE_JEPSEN_S seconds of faults
# (1800 by default, then settling), a fresh seed each time (SLUICE_JEPSEN_SEED replays one).
test-jepsen: $(STAMP)
	$(BIN)/pytest -m jepsen -s

bench: $(STAMP)
	$(BIN)/python benchmarks/run_peers.py --libs sluice

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
