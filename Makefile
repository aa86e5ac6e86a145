# Splitting Folios: build the book and run the tests.
# Needs only python3 (3.11+) and make; npm (optional) for offline widget JavaScript,
# Debian's chromium (optional) for the browser test.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LAB_STAMP := $(VENV)/.lab-stamp
KERNEL_STAMP := $(VENV)/.kernel-stamp
CLASSROOM_STAMP := $(VENV)/.classroom-stamp
# configurable-http-proxy (JupyterHub's proxy) from npm, into the venv (project-local)
CHP_DIR := $(VENV)/classroom-node
CHP     := $(CHP_DIR)/node_modules/.bin/configurable-http-proxy
CHP_VERSION := 5.3.0
JOBS ?= 2

.PHONY: help venv fresh-cache book book-strict test lint typecheck pytest lab lab-reset bench fuzz clean \
	distclean widgets-js classroom bench-classroom

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Re-install only when pyproject.toml changes (the stamp is older than it).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# A kernelspec named python3 inside the venv, so nbclient and myst-nb run chapters with the
# venv's Python (which imports pyfolio from this checkout), whatever else is on the machine.
$(KERNEL_STAMP): $(STAMP)
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $@

venv: $(KERNEL_STAMP) ## create .venv and install the project with its dev extra

widgets-js: ## fetch the widget JavaScript from npm (offline widgets)
	bash tools/fetch_widgets_js.sh

# JUPYTER_PATH puts the venv's kernelspec first.
JB := JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter $(BIN)/jupyter-book

# The execution cache is keyed on each chapter's own code, not on pyfolio: when pyfolio's
# source changes, drop the cached outputs so every chapter runs against the new simulator.
PYFOLIO_HASH = $$(find pyfolio -name '*.py' -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)
fresh-cache:
	@h=$(PYFOLIO_HASH); f=_build/.jupyter_cache/pyfolio.hash; \
	if [ -d _build/.jupyter_cache ] && [ "$$(cat $$f 2>/dev/null)" != "$$h" ]; then \
	  echo "pyfolio changed: re-executing every chapter"; rm -rf _build/.jupyter_cache; fi; \
	mkdir -p _build/.jupyter_cache && echo "$$h" > $$f

book: venv widgets-js fresh-cache ## build the executed book into _build/html
	$(JB) build .
	@echo "Open $(CURDIR)/_build/html/index.html"

# --all: re-read every page, so warnings from an earlier failed build are raised again (Sphinx
# stays silent about unchanged pages). Executed notebooks still come from the jupyter cache.
book-strict: venv widgets-js fresh-cache
	$(JB) build . --all -W -n --keep-going
	@echo "Open $(CURDIR)/_build/html/index.html"

lint: venv
	$(BIN)/ruff check pyfolio tests tools classroom

typecheck: venv
	@if [ -d pyfolio ]; then $(BIN)/mypy pyfolio; else echo "mypy: no pyfolio/ yet, skipped"; fi

# The lab extra too: tests/test_lab.py runs the chapters in a real JupyterLab.
# PYTEST_ARGS adds options (e.g. PYTEST_ARGS=--durations=0 for every test's time).
pytest: venv classroom $(LAB_STAMP)
	JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter $(BIN)/python -m pytest -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

# The book build and pytest both run even if the first fails, so a broken chapter is reported by
# both (Sphinx names the file and shows the cell; pytest names chapter, cell number and line).
test: lint typecheck ## lint, type-check, build with warnings as errors, run every test
	@status=0; \
	$(MAKE) --no-print-directory book-strict || status=1; \
	$(MAKE) --no-print-directory pytest || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (book build or tests, see above)" >&2; fi; \
	exit $$status

$(LAB_STAMP): $(STAMP) tools/lab-overrides.json
	$(BIN)/python -m pip install --quiet -e '.[dev,lab]'
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp tools/lab-overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
	@# lab/ holds .ipynb copies, so jupytext's JupyterLab plugin is not needed (and the one that
	@# jupytext 1.19 ships fails to load in JupyterLab 4.5: "shared module" console error)
	$(BIN)/jupyter labextension disable --level=sys_prefix jupyterlab-jupytext >/dev/null 2>&1
	touch $@

# lab/ is the students' working copy of the chapters (git-ignored; tools/lab.py makes it on the
# first run and never overwrites it). GRADED=1 runs every exercise in graded mode.
GRADED ?=
lab: $(LAB_STAMP) $(KERNEL_STAMP) ## JupyterLab on lab/, a working copy of the chapters (GRADED=1: graded)
	$(BIN)/python tools/lab.py sync
	PYFOLIO_GRADED=$(GRADED) JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter \
	  $(BIN)/jupyter lab --notebook-dir=lab \
	  $$(if [ "$$(id -u)" = 0 ]; then echo --allow-root; fi) $(LAB_ARGS)

CH ?=
lab-reset: $(LAB_STAMP) ## start lab copies again from the chapters: CH="07 10" (all if unset)
	$(BIN)/python tools/lab.py reset $(CH)

bench: venv ## run the simulator benchmarks
	$(BIN)/python benchmarks/run.py

# nbgrader's server extensions (formgrader, the exchange's assignment list) are off: students
# get their notebooks from `deliver`, and the lab stays as `make lab` shows it. Loaded after
# nbgrader's own nbgrader.json, so it wins.
$(CLASSROOM_STAMP): $(STAMP) classroom/nbgrader.students.json
	$(BIN)/python -m pip install --quiet -e '.[dev,classroom]'
	cp classroom/nbgrader.students.json $(VENV)/etc/jupyter/jupyter_server_config.d/
	touch $@

# npm is optional: without it the hub test is skipped (with the reason) and all else runs.
$(CHP):
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix $(CHP_DIR) --no-audit --no-fund --silent \
	    configurable-http-proxy@$(CHP_VERSION) \
	  || echo "WARNING: npm could not install configurable-http-proxy; the hub test will be skipped"; \
	else echo "WARNING: npm not found; the hub test will be skipped"; fi

classroom: $(CLASSROOM_STAMP) $(KERNEL_STAMP) $(CHP) ## install JupyterHub, nbgrader, configurable-http-proxy

bench-classroom: classroom ## N students (N=10) on a local hub: memory, latency, projection
	$(BIN)/python benchmarks/classroom.py --students $${N:-10}

# FUZZ_SEQUENCES (20000), FUZZ_SECONDS (0: no time limit), FUZZ_STEPS, FUZZ_SEED: see tools/fuzz.py
fuzz: venv ## fuzz the facade: 20,000 random sequences (or FUZZ_SECONDS), one-line summary
	$(BIN)/python tools/fuzz.py

clean: ## remove build output and caches (keeps .venv)
	rm -rf _build .jupyter_cache .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -type d \( -name __pycache__ -o -name .ipynb_checkpoints \) -print0 | xargs -0 rm -rf

distclean: clean ## also remove .venv, the fetched widget JavaScript and egg-info
	rm -rf $(VENV) book/_widgets_js *.egg-info
