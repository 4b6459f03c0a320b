# The two commands: `make run` (the coordinator on the embedded default) and `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PG_URL ?= postgres://postgres@127.0.0.1:5432/tessera
# The oldest Python the client supports: on PATH, or one that pyenv installed.
PY39 ?= $(firstword $(foreach p,python3.9 $(wildcard $(HOME)/.pyenv/versions/3.9*/bin/python3.9),$(shell $(p) -V >/dev/null 2>&1 && echo $(p))))
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-sqlite test-postgres test-scenario test-client-py39 lint chromium boinc-client screenshots demo-hosts bench-dispatch clean

$(VENV)/.installed: requirements.txt requirements-dev.txt client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt -e ./client
	$(PY) -m coordinator.work.wheels  # the apps' pinned wheels (spectra's numpy) into var/wheels/, hash-checked
	touch $@

## run: migrate, seed the demo, and serve on http://127.0.0.1:8000 (SQLite, in-process worker)
run: $(VENV)/.installed
	mkdir -p var
	$(PY) manage.py migrate --no-input -v 0
	$(PY) manage.py seed_demo
# The wheel /client offers volunteers, with its hash; without it (pip offline, say) the pages
# say `pip install ./client` instead, and the coordinator still runs.
	$(PY) manage.py build_client || echo "NOTE: the client's wheel was not built; /client shows pip install ./client"
	@echo "Coordinator on http://127.0.0.1:8000/  (API docs: /api/docs/). In another terminal: make demo-hosts"
	DEBUG=1 $(PY) manage.py runserver 127.0.0.1:8000

## demo-hosts: two demo volunteer hosts crunch the demo units against `make run`
demo-hosts: $(VENV)/.installed
	$(PY) scripts/demo_hosts.py

## screenshots: take the pages' screenshots again, into docs/screenshots/ (the browser tests)
screenshots: $(VENV)/.installed chromium
	env -u DATABASE_URL TESSERA_SCREENSHOTS_DIR=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/test_browser.py tests/test_dashboard_browser.py

## test: lint, migrations check, then the whole suite on SQLite and on PostgreSQL
# The two database passes run side by side: each waits on the processes it starts most of the
# time, and CI's machine has two cores. The scenario restarts PostgreSQL, so it runs after them,
# beside the client's Python 3.9 pass. Each pass's output is printed whole when it ends.
test: lint chromium boinc-client
	$(MAKE) --no-print-directory -j2 --output-sync=target test-sqlite test-postgres
	$(MAKE) --no-print-directory -j2 --output-sync=target test-scenario test-client-py39

# Debian's stock BOINC client for tests/test_boinc_client.py, run there as a plain process (its
# service is never started); installed as the browser is, else those tests skip (and fail under CI).
boinc-client:
	@if [ -x /usr/bin/boinc ] && [ -x /usr/bin/boinccmd ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's boinc-client for the BOINC tests"; \
		apt-get install -y -q boinc-client >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q boinc-client >/dev/null; }; \
	else \
		echo "NOTE: boinc-client is missing and apt-get needs root: the BOINC client tests will skip"; \
	fi

# Debian's Chromium for the browser tests (tests/test_browser.py): installed with apt when it
# is missing and we may (root); otherwise those tests skip saying why, and fail under CI.
chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's chromium for the browser tests"; \
		apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else \
		echo "NOTE: /usr/bin/chromium is missing and apt-get needs root: the browser tests will skip"; \
	fi

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	cd client && ../$(VENV)/bin/mypy
	$(PY) manage.py makemigrations --check --dry-run

# The SQLite pass, less the scenario (`test-scenario`); plain `pytest` runs all of it.
test-sqlite: $(VENV)/.installed
	env -u DATABASE_URL $(PY) -m pytest -m "not restarts_postgres"

test-scenario: $(VENV)/.installed
	env -u DATABASE_URL $(PY) -m pytest -m restarts_postgres

# PostgreSQL-only tests run here. Without a server, a laptop skips this pass loudly; CI fails.
test-postgres: $(VENV)/.installed
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(PG_URL)'.rsplit('/',1)[0]+'/postgres', connect_timeout=3)" 2>/dev/null; then \
		DATABASE_URL=$(PG_URL) $(PY) -m pytest; \
	elif [ -n "$$CI" ]; then \
		echo "FAILED: PostgreSQL is not reachable at $(PG_URL) and CI is set"; exit 1; \
	else \
		echo "SKIPPED: the PostgreSQL pass (no server at $(PG_URL)); set PG_URL or start PostgreSQL"; \
	fi

# The client promises Python 3.9+: run its own tests on the oldest Python it supports.
test-client-py39:
	@if [ -n "$(PY39)" ]; then \
		$(PY39) -m venv var/py39 && var/py39/bin/python -m pip install --quiet ./client pytest==8.4.2 pytest-timeout==2.4.0 && \
		cd client && ../var/py39/bin/python -m pytest -q -p no:cacheprovider --timeout=600; \
	elif [ -n "$$CI" ]; then \
		echo "FAILED: python3.9 is not installed and CI is set"; exit 1; \
	else \
		echo "SKIPPED: the client's Python 3.9 pass (no python3.9 on PATH)"; \
	fi

bench-dispatch: $(VENV)/.installed
	$(PY) -m bench.dispatch

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis .mypy_cache client/.mypy_cache
