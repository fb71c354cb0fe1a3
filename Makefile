# Two commands for a fresh machine with Python 3.11 and make:
#   make run   — the platform with its demo model on the embedded default (no PostgreSQL or Redis)
#   make test  — lint, format check and the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Two stamps: `make run` needs only the platform's own dependencies; `make test` also needs
# the test tools and the optional converters (PyTorch: hundreds of MB, GBs off these machines).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint format install install-dev migrate demo clean

$(RUN_STAMP): requirements.txt client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -e ./client
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt requirements-extras.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(DEV_STAMP)

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

format: install-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	$(PY) manage.py makemigrations --check --dry-run --settings=mlplatform.settings.test
	@# pytest exits 5 when it collected nothing: a broken suite, never a pass.
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests were collected" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf var
	find model_store -mindepth 1 ! -name .gitkeep -delete
