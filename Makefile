# emoq — developer and CI entry points.
#
#   make venv          .venv with pinned requirements (+ constraints) and emoq (editable)
#   make system-deps   Debian packages that are missing (chromium, postgresql, redis-server, curl)
#   make services      PostgreSQL, Redis and S3 (SeaweedFS) via scripts/stack.sh up
#   make migrate       alembic upgrade head
#   make run           all of the above, then API (gunicorn) + Celery worker in the foreground
#   make test          venv, system-deps, services, lint, then pytest on the emoq_test database
#                      (extra pytest arguments: make test PYTEST_ARGS="-k auth -x")
#   make test-unit     the pure tests only (pytest -m unit): no service is started or needed
#   make test-faults   the whole fault suite (tests/faults): services killed under load; prints a table
#                      (its own PostgreSQL, Redis, S3, API and worker on spare loopback ports; over
#                      5 min, so nightly by .ci/nightly; make test runs its two short scenarios)
#   make lint          ruff check, ruff format --check, lint-imports (layer contracts), mypy
#   make bench         python -m bench.inference $(BENCH_ARGS)
#   make status / services-down / constraints / clean / distclean

THIS_MAKEFILE := $(lastword $(MAKEFILE_LIST))
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
VENV_STAMP := $(VENV)/.emoq-installed

PYTEST_ARGS ?=
BENCH_ARGS ?=

# Defaults identical to config/ settings; the environment overrides them.
EMOQ_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/emoq
# Tests: same server, database emoq_test (scripts/stack.sh derives it the same
# way and creates it). Redis/S3 isolation (db 15, own queue and bucket) is the
# test suite's own business (tests/conftest.py).
EMOQ_TEST_DATABASE_URL ?= $(shell printf '%s\n' '$(EMOQ_DATABASE_URL)' | sed -E 's@/[^/?]*(\?.*)?$$@/emoq_test\1@')

# Debian packages: chromium for the browser tests (Playwright drives
# /usr/bin/chromium; no browser download), curl for scripts/stack.sh, and the
# PostgreSQL/Redis servers when the machine has none. No ffmpeg: imageio-ffmpeg
# ships its own binary.
SYSTEM_PACKAGES := chromium curl
ifeq ($(shell command -v pg_ctlcluster >/dev/null 2>&1 || command -v postgres >/dev/null 2>&1 || echo missing),missing)
SYSTEM_PACKAGES += postgresql
endif
ifeq ($(shell command -v redis-server >/dev/null 2>&1 || echo missing),missing)
SYSTEM_PACKAGES += redis-server
endif

.PHONY: help venv system-deps services services-down status migrate run test test-unit test-faults lint bench constraints clean distclean

help:
	@sed -n 's/^#   make /  make /p' $(THIS_MAKEFILE)

venv: $(VENV_STAMP)

# Re-runs only when the pins or the project metadata change.
$(VENV_STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.txt -c constraints.txt
	$(PIP) install --no-deps --no-build-isolation -e . || $(PIP) install --no-deps -e .
	@touch $@

system-deps:
	@bash scripts/apt-ensure.sh $(SYSTEM_PACKAGES)

services: venv
	@EMOQ_TEST_DATABASE_URL='$(EMOQ_TEST_DATABASE_URL)' bash scripts/stack.sh up

services-down:
	@bash scripts/stack.sh down

status:
	@bash scripts/stack.sh status

migrate: venv services
	$(VENV)/bin/alembic upgrade head

run: venv system-deps services migrate
	@exec bash scripts/run.sh

test: venv system-deps lint services
	@EMOQ_DATABASE_URL='$(EMOQ_TEST_DATABASE_URL)' EMOQ_TEST_DATABASE_URL='$(EMOQ_TEST_DATABASE_URL)' \
	  $(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

# Needs no running service: the suite starts its own. -m "" lifts pyproject's
# default "not faults", so the long scenarios run too.
test-faults: venv system-deps
	$(PY) -m pytest tests/faults -m "" $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: venv services
	$(PY) -m bench.inference $(BENCH_ARGS)

# Rewrite constraints.txt from what is installed in .venv.
constraints: venv
	@{ echo "# Full lock of the .venv (pip freeze --all, without pip and the project itself), used as"; \
	   echo "#   pip install -r requirements.txt -c constraints.txt"; \
	   echo "# Regenerate with: make constraints"; \
	   $(PIP) freeze --all --exclude emoq --exclude pip; } > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt
	@touch $(VENV_STAMP)

clean:
	rm -rf .pytest_cache build dist *.egg-info
	find . -path ./.venv -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

# Stops the services stack.sh started and removes their state (S3 objects,
# logs) and the venv. var/ content not created by stack.sh is kept.
distclean: clean
	-bash scripts/stack.sh down
	rm -rf var/run var/log var/redis var/seaweedfs $(VENV)
