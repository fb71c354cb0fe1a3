# Two commands for a fresh machine with Python 3.11 and make:
#   make run   — the platform with its demo model on the embedded default (no PostgreSQL or Redis)
#   make test  — lint, format check and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make run` needs only the platform's own dependencies; `make test` also needs
# the test tools and the optional converters (PyTorch: hundreds of MB, GBs off these machines).
# Both install from hashed lock files (ADR 0029): every package at the version and with the
# file hashes `make lock` recorded, so two installs, and two Docker builds, are the same.
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
PIP_LOCKED := $(PY) -m pip install --quiet --require-hashes

.PHONY: run test lint format install install-dev lock lock-check migrate demo clean fuzz

$(RUN_STAMP): requirements.lock client/pyproject.toml | lock-check
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_LOCKED) -r requirements.lock
	@# The mlp client has no dependencies; editable, so it has no file to hash.
	$(PY) -m pip install --quiet --no-deps -e ./client
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.lock
	$(PIP_LOCKED) -r requirements-dev.lock
	touch $(DEV_STAMP)

# Regenerate the lock files from requirements*.txt (needs PyPI), after changing any of them.
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

# A requirements*.txt changed without `make lock`: stop, rather than install something else.
lock-check:
	@bash scripts/lock.sh --check

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py bootstrap_demo

run: demo
	bash scripts/run-local.sh

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	@# The annotations are checked: apps/, mlplatform/, workers/ ([tool.mypy], ADR 0032).
	$(VENV)/bin/mypy

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) manage.py makemigrations --check --dry-run --settings=mlplatform.settings.test
	@# pytest exits 5 when it collected nothing: a broken suite, never a pass.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

# schemathesis over the whole API (schemathesis.toml) against a live gunicorn, once with an API
# key and once with a JWT; needs DATABASE_URL (PostgreSQL) and REDIS_URL. `make test` runs it too.
fuzz: install-dev
	$(PY) -m pytest -q tests/fuzz

clean:
	rm -rf var
	find model_store -mindepth 1 ! -name .gitkeep -delete
