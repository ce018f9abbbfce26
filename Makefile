# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint typecheck pytest bench clean samples-large

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Start everything for a demo: web, worker, scheduler and sandbox, with demo logins.
# DEBUG is off as in production, so seed_demo needs --force to create the demo logins.
run: $(STAMP)
	$(PY) -m connectadmin.keyfile
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --force
	$(PY) manage.py devstack

## The whole suite, plus ruff and mypy.
test: lint typecheck pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy's Django plugin loads the settings, which need the data folder's keys.
typecheck: $(STAMP)
	$(PY) -m connectadmin.keyfile
	$(VENV)/bin/mypy .

# Tests keep their files, database and broker queue apart from `make run`'s var/, so a
# task a test enqueued never reaches the demo's worker; their keys file is made there once.
pytest: $(STAMP)
	CONNECTADMIN_VAR_DIR=$${CONNECTADMIN_VAR_DIR:-$(CURDIR)/var/test} $(PY) -m connectadmin.keyfile
	CONNECTADMIN_VAR_DIR=$${CONNECTADMIN_VAR_DIR:-$(CURDIR)/var/test} $(VENV)/bin/pytest

bench: $(STAMP)
	$(PY) bench/validate.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache

## A large sample file for the demo: var/samples/large.ndjson (N signals, 5% with errors).
N ?= 100000
samples-large: $(STAMP)
	$(PY) bench/validate.py --signals $(N) --generate-only --out var/samples/gen --seed 11
	sed -e 's/3f9a1c7e0b2d4a6f8e1c3b5d7f9/demo-ultimate-appkey/g' \
	    -e 's/a81c0e5d3b7f49e2c6a8d0b4f13/demo-ultimate-appkey/g' \
	    -e 's/0d7e2b9c4f6a81e3d5b7c9f0a2e/demo-ultimate-appkey/g' \
	    var/samples/gen/signals-$(N)-s11-v3.ndjson > var/samples/large.ndjson
	@echo "wrote var/samples/large.ndjson ($(N) signals)"
