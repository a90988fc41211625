# Two commands: `make run` (serve the demo) and `make test` (the whole suite, SQLite and PostgreSQL).
SHELL := /bin/bash
PYTHON ?= python3.11
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced
export UV_PROJECT_ENVIRONMENT := $(VENV)
export UV_PYTHON_DOWNLOADS := never
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1
# the suite runs on two processes (pytest-xdist): each has its own PostgreSQL database; PYTEST_ARGS= for one
PYTEST_ARGS ?= -n 2

.PHONY: run test venv bench bench-load lint postgres clean token typecheck web-assets chromium pgbouncer

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python $(PYTHON)
	touch $(STAMP)

venv: $(STAMP)

run: venv web-assets
	@mkdir -p "$${SHAREDCARE_VAR_DIR:-var}"  # var/ is not in git: the SQLite file and keys live there
	$(VENV)/bin/sharedcare db upgrade
	SHAREDCARE_DEMO=1 $(VENV)/bin/sharedcare demo load
	SHAREDCARE_DEMO=1 SHAREDCARE_BASE_URL="$${SHAREDCARE_BASE_URL:-http://$(HOST):$(PORT)}" \
	  $(VENV)/bin/sharedcare serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

# A token for the server `make run` started (same HOST/PORT, so the same issuer): make token AS=nurse.nina
AS ?= admin.ada
token: venv
	@SHAREDCARE_DEMO=1 SHAREDCARE_BASE_URL="$${SHAREDCARE_BASE_URL:-http://$(HOST):$(PORT)}" \
	  $(VENV)/bin/sharedcare token --user $(AS) $(if $(SCOPE),--scope "$(SCOPE)")

postgres:
	@bash scripts/ensure-postgres.sh

test: venv web-assets chromium pgbouncer
	@if [ "$${SHAREDCARE_TEST_SKIP_POSTGRES:-0}" != "1" ]; then bash scripts/ensure-postgres.sh; fi
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check service consent fhir_profiles tests bench
	$(VENV)/bin/lint-imports

# mypy, strict on consent/ and service/repository/ (mypy.ini)
typecheck: venv
	$(VENV)/bin/mypy --config-file mypy.ini

bench: venv
	@if [ "$${SHAREDCARE_TEST_SKIP_POSTGRES:-0}" != "1" ]; then bash scripts/ensure-postgres.sh; fi
	@# the http benchmark drives the server with wrk (Debian package); without it only that benchmark fails
	@command -v wrk >/dev/null || { if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y wrk || { apt-get update && apt-get install -y wrk; } || echo "could not install wrk" >&2; \
	  else echo "wrk is missing (the http benchmark needs it): sudo apt-get install -y wrk" >&2; fi; }
	SHAREDCARE_DEMO=1 $(VENV)/bin/python -m bench.run $(BENCH_ARGS)  # (demo mode: each benchmark makes its own keys)

# the mixed-workload load run alone (bench/load): LOAD_ARGS="--patients 10000 --duration 60 --workers 2"
bench-load: venv
	@if [ "$${SHAREDCARE_TEST_SKIP_POSTGRES:-0}" != "1" ]; then bash scripts/ensure-postgres.sh; fi
	$(VENV)/bin/python -m bench.load $(LOAD_ARGS)

clean:
	rm -rf $(VENV) $(TOOLS) var/*.db var/*.db-* node_modules $(WEB_BUILD)

# The web pages' front end: the NHS.UK frontend (and axe-core for the accessibility tests) from npm, pinned in
# package-lock.json, built into a git-ignored folder served as static assets; never fetched at run time.
WEB_BUILD := service/web/static/build
NHSUK := node_modules/nhsuk-frontend/dist/nhsuk

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(WEB_BUILD)/.built: node_modules/.installed
	@mkdir -p $(WEB_BUILD)/images
	@# the stylesheet's icons come from our own folder; the remote web fonts are dropped (Arial is the fallback)
	sed -e 's#/assets/images/#/web/static/build/images/#g' -e 's#@font-face{[^}]*}##g' \
	  $(NHSUK)/nhsuk-frontend.min.css > $(WEB_BUILD)/nhsuk.min.css
	cp -R $(NHSUK)/assets/images/. $(WEB_BUILD)/images/
	touch $@

web-assets: $(WEB_BUILD)/.built

# The page tests drive Debian's chromium (headless, by its path /usr/bin/chromium); installed here when missing.
chromium:
	@command -v /usr/bin/chromium >/dev/null || { if [ "$$(id -u)" = 0 ]; then export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y chromium || { apt-get update && apt-get install -y chromium; } || echo "could not install chromium" >&2; \
	  else echo "chromium is missing (the page tests need it): sudo apt-get install -y chromium" >&2; fi; }

# The pgbouncer test (tests/ops/test_pgbouncer.py) runs Debian's pgbouncer (transaction pooling); installed here when
# missing (the package's own service is not needed: the test starts its own on a free port).
pgbouncer:
	@command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || { if [ "$$(id -u)" = 0 ]; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y pgbouncer || { apt-get update && apt-get install -y pgbouncer; } || echo "could not install pgbouncer" >&2; \
	  else echo "pgbouncer is missing (the pgbouncer test needs it): sudo apt-get install -y pgbouncer" >&2; fi; }
