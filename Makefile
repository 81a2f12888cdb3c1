# Every target sets itself up on a fresh clone: .venv is created and the project installed
# (from pyproject.toml) whenever pyproject.toml is newer than the last install.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Dagster's instance folder; yours if DAGSTER_HOME is set (it must be an absolute path).
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export DAGSTER_HOME
# The instance config make puts there: dagster.yaml (SQLite storage), or e.g.
# DAGSTER_YAML=deploy/dagster.postgres.yaml (PostgreSQL storage; DAGSTER_PG_URL set).
# A dagster.yaml already in a DAGSTER_HOME of yours is left alone unless DAGSTER_YAML is given.
DAGSTER_YAML ?= dagster.yaml
export PYTHONUNBUFFERED := 1

.PHONY: run test test-moved-clock dev bench install instance clean status browser docs

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m testio_pipeline.cli.duckdb_setup >/dev/null
	@touch $(STAMP)

install: $(STAMP) instance

# The instance's storage is created here, by one process, before anything else starts: `dg
# dev` starts the webserver, the daemon and a code server at once, and two of them creating a
# new SQLite storage together can stamp its schema version twice, which breaks the instance for
# good ("alembic_version has more than one head").
instance:
	@mkdir -p "$(DAGSTER_HOME)"
	@if [ ! -f "$(DAGSTER_HOME)/dagster.yaml" ] || [ "$(DAGSTER_HOME)" = "$(CURDIR)/.dagster_home" ] \
	    || [ "$(origin DAGSTER_YAML)" != "file" ]; then \
	  cmp -s "$(DAGSTER_YAML)" "$(DAGSTER_HOME)/dagster.yaml" \
	    || { cp "$(DAGSTER_YAML)" "$(DAGSTER_HOME)/dagster.yaml" && rm -f "$(DAGSTER_HOME)/.storage-created" \
	         && echo "$(DAGSTER_YAML) -> $(DAGSTER_HOME)/dagster.yaml"; }; \
	fi
	@test -f "$(DAGSTER_HOME)/.storage-created" \
	  || { $(BIN)/python -c 'import dagster; dagster.DagsterInstance.get().dispose()' && touch "$(DAGSTER_HOME)/.storage-created"; }

## make run: full sync of all five assets (built-in simulator unless configured) + summary
run: install
	$(BIN)/python -m testio_pipeline.cli run

## make test: the whole test suite (slow tests included); .ci/run calls exactly this.
# Three workers on two cores: the daemon, alert and UI tests spend minutes waiting on TTLs and
# sensor ticks, not computing, and a third worker keeps both cores busy meanwhile.
TEST_WORKERS ?= 3
# It runs as a new machine would: the whole session (pytest, its workers and every process
# they start: the Dagster CLI, daemon, webserver, PostgreSQL clients, browser) gets an empty
# HOME and XDG folders made for this run, so nothing an earlier run left in the real home
# (DuckDB's ~/.duckdb, caches, config) can make it pass. Only the install step uses the real
# home, for pip's download cache (a new machine fills its own); the browser test's Chromium is
# Debian's package (make browser), installed system-wide, so it needs no cache in the home.
test: install browser
	@fresh_home=$$(mktemp -d -t testio-home.XXXXXX) && trap 'rm -rf "$$fresh_home"' EXIT && \
	  echo "make test: HOME=$$fresh_home (empty)" && \
	  HOME=$$fresh_home XDG_CACHE_HOME=$$fresh_home/.cache XDG_CONFIG_HOME=$$fresh_home/.config \
	  XDG_DATA_HOME=$$fresh_home/.local/share TESTIO_FRESH_HOME=$$fresh_home \
	  $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -q $(PYTEST_ARGS)

## make test-moved-clock: the whole suite with every test process's clock a year ahead
# (MOVED_CLOCK_DAYS=N for another offset): no test may read today's date against the
# simulator's fixed one (testio_pipeline_tests/moved_clock.py says how, and why not faketime).
test-moved-clock: install
	@pth=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/testio_moved_clock.pth && \
	  $(BIN)/python testio_pipeline_tests/moved_clock.py > "$$pth" && trap 'rm -f "$$pth"' EXIT && \
	  MOVED_CLOCK_DAYS=$${MOVED_CLOCK_DAYS:-365} $(MAKE) --no-print-directory test PYTEST_ARGS='-m "not code_server"'

## make dev: the Dagster UI on 127.0.0.1:3000 with the workspace loaded
dev: install
	$(BIN)/dg dev --host 127.0.0.1 --port 3000

## make bench: the sync benchmark against the simulator's HTTP server
bench: install
	$(BIN)/python benchmarks/bench_sync.py

clean:
	rm -rf $(VENV) .dagster_home data

## make browser: Debian's chromium for the UI test (Playwright drives it; no browser download)
browser:
	@command -v chromium >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

## make docs: regenerate docs/data-dictionary.md from the schema and view declarations
docs: install
	$(BIN)/python -m testio_pipeline.cli.docs

## make status: staleness of each asset and what the next refresh cycle would do
status: install
	$(BIN)/python -m testio_pipeline.cli status
