# fedprog — `make demo` and `make test` work on a fresh machine that has only python3.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LOCKS  := requirements/runtime.lock requirements/dev.lock

.PHONY: demo test lint bench install lock clean browser

# what is installed is the lock, every file checked against its sha256 (pyproject.toml only states the
# compatible ranges); fedprog itself goes on top without dependencies
install: $(STAMP)

$(STAMP): pyproject.toml $(LOCKS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# `make lock`: the maintainer's action after a change of dependencies in pyproject.toml. It resolves
# requirements/runtime.lock (the device: the dependencies and the flower extra; its SOUP and SBOM are
# derived from it) and then requirements/dev.lock (runtime + the qms tools + the dev/test tools, held to
# the runtime pins), each pin `==` with the sha256 of every file pip may install. pip-tools runs from a
# throwaway venv in /tmp (no project dependency); existing pins are kept unless LOCK_UPGRADE=--upgrade.
# Then review each changed runtime pin in traceability/soup_review.yaml (`fedprog trace soup --check`).
LOCK_TOOLS  := /tmp/fedprog-lock-tools
# (`--unsafe-package fedprog`: the dev extra names fedprog[flower,qms], which is installed from the
# checkout, not from the lock; setuptools and pip are pinned like any other package when required)
PIP_COMPILE  = CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_TOOLS)/bin/pip-compile --quiet --generate-hashes \
               --no-emit-index-url --no-emit-find-links --strip-extras --unsafe-package fedprog $(LOCK_UPGRADE)

lock:
	test -x $(LOCK_TOOLS)/bin/pip-compile || { $(PYTHON) -m venv $(LOCK_TOOLS) && \
	  $(LOCK_TOOLS)/bin/python -m pip install --quiet pip-tools==7.7.0; }
	$(PIP_COMPILE) --extra flower -o requirements/runtime.lock pyproject.toml
	$(PIP_COMPILE) --extra dev -c requirements/runtime.lock -o requirements/dev.lock pyproject.toml

demo: $(STAMP)
	$(BIN)/fedprog demo --external --second-model

# the suite writes JUnit evidence with each test's requirement ids; trace check then names every
# gap (untested requirement, uncontrolled hazard, unmarked test, suspect link) — even after a failure
test: $(STAMP) lint browser
	$(BIN)/python -m pytest -q --junitxml=build/test-results/junit.xml; s=$$?; \
	$(BIN)/fedprog trace check --junit build/test-results/junit.xml; t=$$?; \
	[ $$s -eq 0 ] && [ $$t -eq 0 ]

# the risk page's tests drive Debian's Chromium (no browser download), and the README's walk scores a
# patient with curl; installed here when this runs as root with apt (as CI does), else those tests skip
# and say why
browser:
	@if { [ ! -x /usr/bin/chromedriver ] || ! command -v curl >/dev/null 2>&1; } && \
	  command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium, chromium-driver and curl for the browser and README tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver fonts-dejavu-core curl >/dev/null \
	  || echo "could not install Chromium: the browser tests will skip"; fi

lint: $(STAMP)
	$(BIN)/ruff check device federated consent ledger prognosis validation traceability dossier fedprog tests benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/fedcox_vs_pooled.py

clean:
	rm -rf $(VENV) fedprog-workspace .pytest_cache .ruff_cache
