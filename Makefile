# The two commands a newcomer needs: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)

.PHONY: run test lint typecheck pytest pytest-rabbitmq bench clean samples-large ext

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# The validator's duplicate-key scanner, a small C extension built beside its source for
# the venv's Python (again when the source is newer). Optional: without a C compiler or
# Python's headers the validator warns and looks for duplicate keys in Python, slower; the
# tests insist on it in CI (CI=true).
DUPSCAN := signals_app/validation/_dupscan
ext: $(STAMP)
	@suffix=$$($(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))') \
	&& include=$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("include"))') \
	&& so=$(DUPSCAN)$$suffix \
	&& if [ "$$so" -nt $(DUPSCAN).c ]; then exit 0; fi \
	&& echo "$(CC) -O2 -shared -fPIC -I$$include $(DUPSCAN).c -o $$so" \
	&& if $(CC) -O2 -shared -fPIC -I"$$include" $(DUPSCAN).c -o "$$so.tmp"; \
	then mv -f "$$so.tmp" "$$so"; \
	else rm -f "$$so.tmp"; echo "warning: $$so not built: duplicate keys checked in Python" >&2; fi

## Start everything for a demo: web, worker, scheduler and sandbox, with demo logins.
# DEBUG is off as in production, so seed_demo needs --force to create the demo logins.
run: $(STAMP) ext
	$(PY) -m connectadmin.keyfile
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo --force
	$(PY) manage.py devstack

## The whole suite, plus ruff and mypy.
test: lint typecheck pytest pytest-rabbitmq

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy's Django plugin loads the settings, which need the data folder's keys.
typecheck: $(STAMP)
	$(PY) -m connectadmin.keyfile
	$(VENV)/bin/mypy .

# Tests keep their files, database and broker queue apart from `make run`'s var/, so a
# task a test enqueued never reaches the demo's worker; their keys file is made there once.
pytest: $(STAMP) ext
	CONNECTADMIN_VAR_DIR=$${CONNECTADMIN_VAR_DIR:-$(CURDIR)/var/test} $(PY) -m connectadmin.keyfile
	CONNECTADMIN_VAR_DIR=$${CONNECTADMIN_VAR_DIR:-$(CURDIR)/var/test} $(VENV)/bin/pytest

# The tests of how the broker hands out a killed worker's task and delays a countdown
# (marked `broker`) once more, on RabbitMQ, when TEST_RABBITMQ_URL names one (CI's does):
# `pytest` ran them on CELERY_BROKER_URL's broker, Redis in CI.
pytest-rabbitmq: $(STAMP) ext
	@if [ -z "$$TEST_RABBITMQ_URL" ]; then \
	  echo "TEST_RABBITMQ_URL is not set: the broker tests did not run on RabbitMQ"; exit 0; fi; \
	echo "pytest -m broker, with CELERY_BROKER_URL=\$$TEST_RABBITMQ_URL"; \
	export CONNECTADMIN_VAR_DIR=$${CONNECTADMIN_VAR_DIR:-$(CURDIR)/var/test}; \
	$(PY) -m connectadmin.keyfile \
	&& CELERY_BROKER_URL="$$TEST_RABBITMQ_URL" $(VENV)/bin/pytest -m broker

bench: $(STAMP) ext
	$(PY) bench/validate.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
	rm -f $(DUPSCAN).*so $(DUPSCAN).*so.tmp

## A large sample file for the demo: var/samples/large.ndjson (N signals, 5% with errors).
N ?= 100000
samples-large: $(STAMP)
	$(PY) bench/validate.py --signals $(N) --generate-only --out var/samples/gen --seed 11
	sed -e 's/3f9a1c7e0b2d4a6f8e1c3b5d7f9/demo-ultimate-appkey/g' \
	    -e 's/a81c0e5d3b7f49e2c6a8d0b4f13/demo-ultimate-appkey/g' \
	    -e 's/0d7e2b9c4f6a81e3d5b7c9f0a2e/demo-ultimate-appkey/g' \
	    var/samples/gen/signals-$(N)-s11-v3.ndjson > var/samples/large.ndjson
	@echo "wrote var/samples/large.ndjson ($(N) signals)"
