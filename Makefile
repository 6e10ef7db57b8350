# Gardien: every step a fresh machine needs lives here (README: `make run`, `make test`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GARDIEN_DATA_DIR ?= var

.PHONY: install run test lint typecheck pytest bench fuzz assets browser-deps postgres messages clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# Bytecode for our own sources even where PYTHONDONTWRITEBYTECODE is set: a faster start.
	$(BIN)/python -m compileall -q src
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/gardien keys init
	@echo "Admin: create an account with .venv/bin/gardien admin create-user you@example.org --role admin"
	$(BIN)/gardien serve --host 127.0.0.1 --port 8000

# Debian's chromium for the browser tests (Playwright drives it; it never downloads its own).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# PostgreSQL is required for the test suite; start the machine's cluster when it is down.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | sort -V | tail -1) main start; \
	  for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

lint: install
	$(BIN)/ruff check src tests bench migrations
	$(BIN)/ruff format --check src tests bench migrations

typecheck: install
	$(BIN)/mypy

pytest: install browser-deps postgres
	GARDIEN_TEST_POSTGRES_URL=$${GARDIEN_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
	  $(BIN)/pytest -n 2 -q

test: lint typecheck pytest

bench: install
	$(BIN)/python -m bench

# The hostile-input suite with many more examples per operation than `make test` runs.
fuzz: install postgres
	GARDIEN_FUZZ_EXAMPLES=$${GARDIEN_FUZZ_EXAMPLES:-100} \
	GARDIEN_TEST_POSTGRES_URL=$${GARDIEN_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
	  $(BIN)/pytest -n 2 -q tests/security/test_hostile_input.py tests/analytics/test_fuzz.py \
	  tests/register/test_properties.py tests/security/test_parser_properties.py

# The consent banner's minified files are committed, so only this target needs Node and npm.
assets:
	cd tools/assets && npm ci --no-audit --no-fund --loglevel=error && node build.mjs

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

# Extract every translatable string and merge it into the fr and ro catalogs (then translate
# the new entries; tests fail on any missing or fuzzy one).
messages: install
	$(BIN)/pybabel extract -F babel.cfg -k _ -k N_ -k gettext -k ngettext:1,2 --no-location --sort-output \
	  --project gardien -o src/gardien/locale/messages.pot .
	for lang in fr ro; do \
	  if [ -f src/gardien/locale/$$lang/LC_MESSAGES/messages.po ]; then \
	    $(BIN)/pybabel update --no-fuzzy-matching -i src/gardien/locale/messages.pot -d src/gardien/locale -l $$lang; \
	  else \
	    $(BIN)/pybabel init -i src/gardien/locale/messages.pot -d src/gardien/locale -l $$lang; \
	  fi; \
	done
